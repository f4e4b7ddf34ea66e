// EdgeInfinite: sinks and a sliding window kept exactly (SinkWindowCache); tokens leaving the
// window are folded, pre-RoPE, into a fixed fp32 memory M [d x d], z [d] per layer and KV head;
// queries read the memory (pre-RoPE) and a trained gate mixes that read-out into the local
// attention. While nothing has been folded (total tokens <= S + W + L) attention is exactly the
// base model's, and with no gate file the memory is kept but never read (gate 0).
#pragma once

#include <vector>

#include "engine/kv/kv_policy.h"
#include "engine/kv/sink_window_cache.h"

namespace edgeinf {

class EdgeInfinitePolicy final : public KvPolicy {
 public:
  EdgeInfinitePolicy(const AttentionShape& s, const KvPolicyOptions& o);

  const char* name() const override { return "edgeinfinite"; }
  int64_t max_batch() const override { return cache_.segment(); }
  Status begin_batch(int64_t n_tok) override;
  void attend(const LayerAttention& a, kernels::cpu::ThreadPool& pool) override;
  void end_batch(kernels::cpu::ThreadPool&) override { cache_.commit(); }
  void reset() override;

  // The layer step without the gate (gate calibration): folds leaving tokens, writes the memory
  // read-out to a_mem ([n_tok, n_head * head_dim]) and the local attention to a.out. Returns
  // false, leaving a_mem untouched, while the memory is empty.
  bool attend_parts(const LayerAttention& a, float* a_mem, kernels::cpu::ThreadPool& pool);

  int64_t n_seen() const override { return cache_.n_seen(); }
  int64_t n_kept() const override { return cache_.n_cached(); }
  int64_t n_compressed() const override { return cache_.n_left(); }
  size_t state_bytes() const override;
  size_t max_state_bytes() const override;
  Status save(ByteWriter& w) const override;
  Status restore(ByteReader& r) override;
  // The cache's changes, and the whole memory when tokens were folded since the mark.
  bool has_deltas() const override { return true; }
  void mark_saved() override { cache_.mark_saved(); }
  bool save_delta(ByteWriter& w) const override;
  size_t delta_size() const override;
  Status apply_delta(ByteReader& r, kernels::cpu::ThreadPool& pool) override;

 private:
  // Evicts the planned leaving tokens of a layer and folds them into its memory.
  void fold(int layer, kernels::cpu::ThreadPool& pool);
  void save_memory(ByteWriter& w) const;
  Status restore_memory(ByteReader& r);

  AttentionShape s_;
  SinkWindowCache cache_;
  bool delta_;
  const MemoryGate* gate_;
  std::vector<std::vector<float>> m_, z_;  // per layer [n_kv_head, d, d] and [n_kv_head, d]
  std::vector<float> k_leave_, v_leave_, a_mem_, g_;
};

}  // namespace edgeinf
