// EdgeInfinite: sinks and a sliding window kept exactly (SinkWindowCache); tokens leaving the
// window are folded, pre-RoPE, into a fixed fp32 memory M [d x d], z [d] per layer and KV head;
// queries read the memory (pre-RoPE) and a trained gate mixes that read-out into the local
// attention. While nothing has been folded (total tokens <= S + W + L) attention is exactly the
// base model's, and with no gate file the memory is kept but never read (gate 0).
#pragma once

#include "engine/kv/kv_policy.h"
#include "engine/kv/sink_window_cache.h"

namespace edgeinf {

class EdgeInfinitePolicy final : public KvPolicy {
 public:
  // The store comes from store_shape().
  EdgeInfinitePolicy(const AttentionShape& s, const KvPolicyOptions& o, std::unique_ptr<KvStore> store);
  static KvStoreShape store_shape(const KvPolicyOptions& o);

  const char* name() const override { return "edgeinfinite"; }
  int64_t max_batch() const override { return cache_.segment(); }
  StepShape step_shape() const override { return {cache_.capacity(), cache_.segment()}; }
  Status begin_batch(int64_t n_tok) override;
  void attend(const LayerAttention& a, kernels::cpu::ThreadPool& pool) override;
  void end_batch(kernels::cpu::ThreadPool&) override { cache_.commit(); }
  void reset() override;

  // The layer step without the gate (gate calibration): folds leaving tokens, reads the memory
  // into the store's read-out (host_memory_read on the CPU) and writes the local attention to
  // a.out. Returns false, reading nothing, while the memory is empty.
  bool attend_parts(const LayerAttention& a, kernels::cpu::ThreadPool& pool);

  int64_t n_seen() const override { return cache_.n_seen(); }
  int64_t n_kept() const override { return cache_.n_cached(); }
  int64_t n_compressed() const override { return cache_.n_left(); }
  size_t state_bytes() const override { return store_->bytes(); }
  size_t max_state_bytes() const override { return store_->max_bytes(); }
  Status save(ByteWriter& w) const override;
  Status restore(ByteReader& r) override;
  // The cache's changes, and the whole memory when tokens were folded since the mark.
  bool has_deltas() const override { return true; }
  void mark_saved() override { cache_.mark_saved(); }
  StatusOr<bool> save_delta(ByteWriter& w) const override;
  size_t delta_size() const override;
  Status apply_delta(ByteReader& r, kernels::cpu::ThreadPool& pool) override;
  const KvStore* store() const override { return store_.get(); }

 private:
  // Evicts the planned leaving tokens of a layer and folds them into its memory.
  void fold(int layer, kernels::cpu::ThreadPool& pool);

  std::unique_ptr<KvStore> store_;  // sink and window rows, M and z per layer
  SinkWindowCache cache_;
  bool delta_;
  const MemoryGate* gate_;
};

}  // namespace edgeinf
