// StreamingLLM: attention sinks plus a recent window; tokens leaving the window are dropped.
#include "engine/kv/sink_window_cache.h"

namespace edgeinf {
namespace {

class StreamingPolicy final : public KvPolicy {
 public:
  StreamingPolicy(const AttentionShape& s, const KvPolicyOptions& o, std::unique_ptr<KvStore> store)
      : store_(std::move(store)), cache_(s, o.sink, o.window, o.segment, *store_) {}

  const char* name() const override { return "streaming"; }
  int64_t max_batch() const override { return cache_.segment(); }
  StepShape step_shape() const override { return {cache_.capacity(), 0}; }
  Status begin_batch(int64_t n_tok) override {
    cache_.plan(n_tok);
    return absl::OkStatus();
  }
  void attend(const LayerAttention& a, kernels::cpu::ThreadPool& pool) override {
    cache_.evict(a.layer, false, pool);
    cache_.attend(a, pool);
  }
  void end_batch(kernels::cpu::ThreadPool&) override { cache_.commit(); }
  void reset() override {
    cache_.reset();
    store_->reset();
  }
  int64_t n_seen() const override { return cache_.n_seen(); }
  int64_t n_kept() const override { return cache_.n_cached(); }
  int64_t n_compressed() const override { return cache_.n_left(); }
  size_t state_bytes() const override { return store_->bytes(); }
  size_t max_state_bytes() const override { return store_->max_bytes(); }
  Status save(ByteWriter& w) const override { return cache_.save(w); }
  Status restore(ByteReader& r) override { return cache_.restore(r); }
  bool has_deltas() const override { return true; }
  void mark_saved() override { cache_.mark_saved(); }
  StatusOr<bool> save_delta(ByteWriter& w) const override { return cache_.save_delta(w); }
  size_t delta_size() const override { return cache_.delta_size(); }
  Status apply_delta(ByteReader& r, kernels::cpu::ThreadPool& pool) override { return cache_.apply_delta(r, pool); }
  const KvStore* store() const override { return store_.get(); }

 private:
  std::unique_ptr<KvStore> store_;
  SinkWindowCache cache_;
};

}  // namespace

StatusOr<std::unique_ptr<KvPolicy>> make_streaming_policy(const KvPolicyOptions& o, const AttentionShape& s,
                                                          const KvStoreMaker& stores) {
  EDGEINF_ASSIGN_OR_RETURN(
      std::unique_ptr<KvStore> store,
      stores(SinkWindowCache::store_shape(o.sink, o.window, o.segment, false, nullptr, o.kv_type)));
  return std::unique_ptr<KvPolicy>(std::make_unique<StreamingPolicy>(s, o, std::move(store)));
}

}  // namespace edgeinf
