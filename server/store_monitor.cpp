#include "server/store_monitor.h"

#include <spdlog/spdlog.h>

#include <chrono>

namespace edgeinf::server {
namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

}  // namespace

MonitoredStore::MonitoredStore(std::unique_ptr<SessionStore> store, Metrics& metrics,
                               std::function<void(bool up)> on_change)
    : store_(std::move(store)), metrics_(metrics), on_change_(std::move(on_change)) {
  metrics_.store_up(true);
}

void MonitoredStore::observe(const char* op, double seconds, const Status& st) {
  const bool unreachable = st.code() == absl::StatusCode::kUnavailable;
  metrics_.store_op(op, seconds, unreachable || st.code() == absl::StatusCode::kDataLoss);
  const bool was = up_.exchange(!unreachable);
  if (was == !unreachable) return;
  metrics_.store_up(!unreachable);
  if (unreachable) {
    spdlog::error("session store {} is unreachable: {}", store_->url(), std::string(st.message()));
  } else {
    spdlog::info("session store {} answers again", store_->url());
  }
  if (on_change_) on_change_(!unreachable);
}

Status MonitoredStore::commit(const std::string& key, const CommitRequest& req) {
  const auto t0 = Clock::now();
  Status st = store_->commit(key, req);
  observe("commit", since(t0), st);
  if (st.ok()) metrics_.store_written(req.full, int64_t(req.record.size()));
  return st;
}

StatusOr<std::optional<std::vector<StoredRecord>>> MonitoredStore::read(const std::string& key) {
  const auto t0 = Clock::now();
  auto r = store_->read(key);
  observe("read", since(t0), r.status());
  return r;
}

StatusOr<std::optional<StoredRecord>> MonitoredStore::read_head(const std::string& key) {
  const auto t0 = Clock::now();
  auto r = store_->read_head(key);
  observe("read_head", since(t0), r.status());
  return r;
}

Status MonitoredStore::remove(const std::string& key) {
  const auto t0 = Clock::now();
  Status st = store_->remove(key);
  observe("remove", since(t0), st);
  return st;
}

StatusOr<std::vector<std::string>> MonitoredStore::list(const std::string& prefix) {
  const auto t0 = Clock::now();
  auto r = store_->list(prefix);
  observe("list", since(t0), r.status());
  return r;
}

Status MonitoredStore::ping() {
  const auto t0 = Clock::now();
  Status st = store_->ping();
  observe("ping", since(t0), st);
  return st;
}

}  // namespace edgeinf::server
