#include "server/metrics.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace edgeinf::server {
namespace {

prometheus::Histogram::BucketBoundaries latency_buckets() {
  return {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600};
}

}  // namespace

Metrics::Metrics() : registry_(std::make_shared<prometheus::Registry>()) {
  requests_ = &prometheus::BuildCounter()
                   .Name("edgeinf_requests_total")
                   .Help("RPCs by method and status code")
                   .Register(*registry_);
  duration_ = &prometheus::BuildHistogram()
                   .Name("edgeinf_request_duration_seconds")
                   .Help("Time from an RPC's arrival to its status")
                   .Register(*registry_);
  auto& ttft = prometheus::BuildHistogram()
                   .Name("edgeinf_time_to_first_token_seconds")
                   .Help("Time from a Generate request's arrival to its first token")
                   .Register(*registry_);
  ttft_ = &ttft.Add({}, latency_buckets());
  auto& itl = prometheus::BuildHistogram()
                  .Name("edgeinf_inter_token_latency_seconds")
                  .Help("Time between consecutive tokens of a stream")
                  .Register(*registry_);
  itl_ =
      &itl.Add({}, prometheus::Histogram::BucketBoundaries{0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1});
  tokens_ = &prometheus::BuildCounter()
                 .Name("edgeinf_tokens_total")
                 .Help(
                     "Tokens by kind: prompt, cached (history reused from a session), generated, compressed, "
                     "ingested (uploaded with Ingest)")
                 .Register(*registry_);
  store_latency_ = &prometheus::BuildHistogram()
                        .Name("edgeinf_session_store_duration_seconds")
                        .Help("Session store operations by kind")
                        .Register(*registry_);
  store_errors_ = &prometheus::BuildCounter()
                       .Name("edgeinf_session_store_errors_total")
                       .Help("Session store operations that failed (store unreachable, timed out or damaged), by kind")
                       .Register(*registry_);
  store_written_ = &prometheus::BuildCounter()
                        .Name("edgeinf_session_store_written_bytes_total")
                        .Help("Record bytes committed to the session store, by kind: full snapshots and deltas")
                        .Register(*registry_);
  auto gauge = [&](const char* name, const char* help) {
    return &prometheus::BuildGauge().Name(name).Help(help).Register(*registry_).Add({});
  };
  store_up_ = gauge("edgeinf_session_store_up", "1 when the session store answers, 0 when it cannot be reached");
  hot_sessions_ = gauge("edgeinf_active_sessions", "Sessions whose state is in memory");
  state_bytes_ = gauge("edgeinf_state_bytes",
                       "Bytes the contexts in memory count against the memory budget (a busy one: its bound)");
  queue_depth_ = gauge("edgeinf_queue_depth", "Turns waiting for their session or for the scheduler");
  active_turns_ = gauge("edgeinf_active_turns", "Turns the scheduler is running");
  committing_turns_ = gauge("edgeinf_committing_turns", "Turns writing their new state to the session store");
  resident_bytes_ = gauge("edgeinf_resident_memory_bytes", "Resident memory of the process");
  open_fds_ = gauge("process_open_fds", "Open file descriptors of the process");
  threads_ = gauge("process_threads", "Threads of the process");
  budget_bytes_ = gauge("edgeinf_memory_budget_bytes", "The process's memory budget (--memory_budget_mb)");
  fixed_bytes_ = gauge("edgeinf_memory_fixed_bytes",
                       "What the budget sets aside for the model, scratch and runtime besides contexts");
  store_up_->Set(1);
}

void Metrics::request(const std::string& method, const std::string& code) {
  requests_->Add({{"method", method}, {"code", code}}).Increment();
}

void Metrics::request_duration(const std::string& method, double s) {
  duration_->Add({{"method", method}}, latency_buckets()).Observe(s);
}

void Metrics::tokens(const std::string& kind, int64_t n) { tokens_->Add({{"kind", kind}}).Increment(double(n)); }

void Metrics::store_op(const std::string& op, double s, bool failed) {
  store_latency_->Add({{"op", op}}, latency_buckets()).Observe(s);
  auto& errors = store_errors_->Add({{"op", op}});
  if (failed) errors.Increment();
}

void Metrics::store_written(bool full, int64_t bytes) {
  store_written_->Add({{"kind", full ? "full" : "delta"}}).Increment(double(bytes));
}

void Metrics::set_gauges(const Gauges& g) {
  hot_sessions_->Set(double(g.hot_sessions));
  state_bytes_->Set(double(g.charged_bytes));
  queue_depth_->Set(double(g.queued_turns));
  active_turns_->Set(double(g.active_turns));
  committing_turns_->Set(double(g.committing_turns));
  resident_bytes_->Set(double(g.resident_bytes));
  budget_bytes_->Set(double(g.budget_bytes));
  fixed_bytes_->Set(double(g.fixed_bytes));
  open_fds_->Set(double(g.open_fds));
  threads_->Set(double(g.threads));
}

int64_t open_fds() {
  std::error_code ec;
  int64_t n = 0;
  for (std::filesystem::directory_iterator it("/proc/self/fd", ec), end; !ec && it != end; it.increment(ec)) ++n;
  return ec ? -1 : n - 1;  // less the descriptor that reads the directory
}

int64_t thread_count() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("Threads:", 0) == 0) return std::strtoll(line.c_str() + 8, nullptr, 10);
  }
  return -1;
}

}  // namespace edgeinf::server
