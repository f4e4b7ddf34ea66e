// The session store as the service watches it: every operation is timed and counted in the
// metrics, and whether the store answers is known at all times (health, metrics): a call that
// cannot reach it marks it down, one that succeeds marks it up, and probe() pings it.
#pragma once

#include <atomic>
#include <functional>
#include <memory>

#include "engine/api/session_store.h"
#include "server/metrics.h"

namespace edgeinf::server {

class MonitoredStore final : public SessionStore {
 public:
  // on_change(up) is called when the store goes down or comes back.
  MonitoredStore(std::unique_ptr<SessionStore> store, Metrics& metrics, std::function<void(bool up)> on_change);

  Status commit(const std::string& key, const CommitRequest& req) override;
  StatusOr<std::optional<std::vector<StoredRecord>>> read(const std::string& key) override;
  StatusOr<std::optional<StoredRecord>> read_head(const std::string& key) override;
  Status remove(const std::string& key) override;
  StatusOr<std::vector<std::string>> list(const std::string& prefix) override;
  Status ping() override;
  std::string url() const override { return store_->url(); }
  int record_copies() const override { return store_->record_copies(); }

  bool up() const { return up_.load(); }

 private:
  // Records an operation's outcome: Unavailable means the store did not answer.
  void observe(const char* op, double seconds, const Status& st);

  std::unique_ptr<SessionStore> store_;
  Metrics& metrics_;
  std::function<void(bool)> on_change_;
  std::atomic<bool> up_{true};
};

}  // namespace edgeinf::server
