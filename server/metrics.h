// Prometheus metrics of the service (prefix edgeinf_, base units), served on their own port.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <memory>
#include <string>

namespace edgeinf::server {

class Metrics {
 public:
  Metrics();
  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }

  void request(const std::string& method, const std::string& code);
  void time_to_first_token(double s) { ttft_->Observe(s); }
  void inter_token(double s) { itl_->Observe(s); }
  void request_duration(const std::string& method, double s);
  // Tokens by kind: prompt, cached, generated, compressed (Generate), ingested (Ingest).
  void tokens(const std::string& kind, int64_t n);
  // A session store operation: its latency, and whether it failed (the store, not the request).
  void store_op(const std::string& op, double s, bool failed);
  void store_written(bool full, int64_t bytes);
  void store_up(bool up) { store_up_->Set(up ? 1 : 0); }

  struct Gauges {
    int64_t hot_sessions = 0, charged_bytes = 0, queued_turns = 0, active_turns = 0, committing_turns = 0;
    int64_t resident_bytes = 0, budget_bytes = 0, fixed_bytes = 0;
    int64_t open_fds = 0, threads = 0;
  };
  void set_gauges(const Gauges& g);

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>* requests_;
  prometheus::Family<prometheus::Histogram>* duration_;
  prometheus::Family<prometheus::Counter>* tokens_;
  prometheus::Family<prometheus::Histogram>* store_latency_;
  prometheus::Family<prometheus::Counter>* store_errors_;
  prometheus::Family<prometheus::Counter>* store_written_;
  prometheus::Histogram* ttft_;
  prometheus::Histogram* itl_;
  prometheus::Gauge *store_up_, *hot_sessions_, *state_bytes_, *queue_depth_, *active_turns_, *committing_turns_;
  prometheus::Gauge *resident_bytes_, *budget_bytes_, *fixed_bytes_, *open_fds_, *threads_;
};

// The process's open file descriptors and threads (Linux /proc/self), -1 when unknown.
int64_t open_fds();
int64_t thread_count();

}  // namespace edgeinf::server
