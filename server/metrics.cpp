#include "server/metrics.h"

namespace edgeinf::server {
namespace {

prometheus::Histogram::BucketBoundaries latency_buckets() {
  return {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600};
}

}  // namespace

Metrics::Metrics() : registry_(std::make_shared<prometheus::Registry>()) {
  requests_ = &prometheus::BuildCounter().Name("edgeinf_requests_total").Help("RPCs by method and status code").Register(*registry_);
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
  itl_ = &itl.Add({}, prometheus::Histogram::BucketBoundaries{0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1});
  tokens_ = &prometheus::BuildCounter()
                 .Name("edgeinf_tokens_total")
                 .Help("Tokens by kind: prompt, cached (history reused from a session), generated, compressed")
                 .Register(*registry_);
  store_latency_ = &prometheus::BuildHistogram()
                        .Name("edgeinf_session_store_duration_seconds")
                        .Help("Session store operations by kind")
                        .Register(*registry_);
  store_errors_ = &prometheus::BuildCounter()
                       .Name("edgeinf_session_store_errors_total")
                       .Help("Failed session store operations by kind")
                       .Register(*registry_);
  auto gauge = [&](const char* name, const char* help) {
    return &prometheus::BuildGauge().Name(name).Help(help).Register(*registry_).Add({});
  };
  hot_sessions_ = gauge("edgeinf_active_sessions", "Sessions whose state is in memory");
  state_bytes_ = gauge("edgeinf_state_bytes", "Attention state bytes of the contexts in memory");
  queue_depth_ = gauge("edgeinf_queue_depth", "Turns waiting for the scheduler");
  active_turns_ = gauge("edgeinf_active_turns", "Turns the scheduler is running");
}

void Metrics::request(const std::string& method, const std::string& code) {
  requests_->Add({{"method", method}, {"code", code}}).Increment();
}

void Metrics::request_duration(const std::string& method, double s) {
  duration_->Add({{"method", method}}, latency_buckets()).Observe(s);
}

void Metrics::tokens(int64_t prompt, int64_t cached, int64_t generated, int64_t compressed) {
  tokens_->Add({{"kind", "prompt"}}).Increment(double(prompt));
  tokens_->Add({{"kind", "cached"}}).Increment(double(cached));
  tokens_->Add({{"kind", "generated"}}).Increment(double(generated));
  tokens_->Add({{"kind", "compressed"}}).Increment(double(compressed));
}

void Metrics::store_op(const std::string& op, double s, bool ok) {
  store_latency_->Add({{"op", op}}, latency_buckets()).Observe(s);
  if (!ok) store_errors_->Add({{"op", op}}).Increment();
}

void Metrics::set_gauges(int64_t hot_sessions, int64_t state_bytes, int64_t queue_depth, int64_t active_turns) {
  hot_sessions_->Set(double(hot_sessions));
  state_bytes_->Set(double(state_bytes));
  queue_depth_->Set(double(queue_depth));
  active_turns_->Set(double(active_turns));
}

}  // namespace edgeinf::server
