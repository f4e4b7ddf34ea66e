// SnapKV and PyramidKV: keep every token until a layer holds budget + segment entries, then keep,
// per KV head, the last `obs_window` entries plus the budget - obs_window earlier entries that the
// observation window's queries attend to most (votes max-pooled along the keys). Keys keep their
// absolute positions. PyramidKV only changes the per-layer budgets.
#pragma once

#include <vector>

#include "engine/kv/kv_policy.h"

namespace edgeinf {

class SelectionPolicy : public KvPolicy {
 public:
  // layer_budgets: KV entries per head kept after a selection, one per layer (each > obs_window).
  SelectionPolicy(const char* name, const AttentionShape& s, const KvPolicyOptions& o,
                  std::vector<int64_t> layer_budgets);

  const char* name() const override { return name_; }
  int64_t max_batch() const override { return segment_; }
  StepShape step_shape() const override { return {max_capacity_, 0}; }
  Status begin_batch(int64_t n_tok) override;
  void attend(const LayerAttention& a, kernels::cpu::ThreadPool& pool) override;
  void end_batch(kernels::cpu::ThreadPool& pool) override;
  void reset() override;
  int64_t n_seen() const override { return n_seen_; }
  int64_t n_kept() const override;
  int64_t n_compressed() const override { return n_evicted_; }
  size_t state_bytes() const override;
  Status save(ByteWriter& w) const override;
  Status restore(ByteReader& r) override;
  // Entries per KV head each layer keeps after a selection.
  const std::vector<int64_t>& layer_budgets() const { return budget_; }
  // The absolute positions of the entries one KV head of one layer holds, in cache order. Entries
  // restored from a snapshot show -1: snapshots do not carry positions (keys keep their rotation).
  std::vector<int32_t> kept_positions(int layer, int kv_head) const;

 private:
  void select(int layer, kernels::cpu::ThreadPool& pool);

  const char* name_;
  AttentionShape s_;
  int64_t segment_, obs_window_, pool_kernel_;
  std::vector<int64_t> budget_, capacity_, n_entries_;
  KvType type_;
  size_t row_bytes_;  // one entry of one head in type_
  int64_t n_seen_ = 0, n_batch_ = 0, n_evicted_ = 0;
  std::vector<int32_t> positions_;
  // Per layer: K, V [n_kv_head, capacity, head_dim] (rotated K) in type_; the last obs_window
  // rotated queries [obs_window, n_head * head_dim] in arrival order, and how many are valid.
  std::vector<std::vector<uint8_t>> k_, v_;
  std::vector<std::vector<float>> recent_q_;
  // Per layer: the absolute position of each entry [n_kv_head, capacity].
  std::vector<std::vector<int32_t>> pos_;
  std::vector<int64_t> n_recent_q_;
  // A selection's scratch [n_kv_head, max_capacity_]: votes, scores, pooled votes, the order.
  int64_t max_capacity_ = 0;
  std::vector<float> votes_, scores_, pooled_;
  std::vector<int64_t> order_;
};

}  // namespace edgeinf
