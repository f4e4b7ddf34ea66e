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
  void tokens(int64_t prompt, int64_t cached, int64_t generated, int64_t compressed);
  void store_op(const std::string& op, double s, bool ok);
  void set_gauges(int64_t hot_sessions, int64_t state_bytes, int64_t queue_depth, int64_t active_turns);

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>* requests_;
  prometheus::Family<prometheus::Histogram>* duration_;
  prometheus::Family<prometheus::Counter>* tokens_;
  prometheus::Family<prometheus::Histogram>* store_latency_;
  prometheus::Family<prometheus::Counter>* store_errors_;
  prometheus::Histogram* ttft_;
  prometheus::Histogram* itl_;
  prometheus::Gauge *hot_sessions_, *state_bytes_, *queue_depth_, *active_turns_;
};

}  // namespace edgeinf::server
