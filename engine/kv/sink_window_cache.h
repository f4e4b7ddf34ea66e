// The fixed-size exact part of StreamingLLM and EdgeInfinite: S sink tokens and a sliding window
// of the most recent W..W+L tokens, per layer, token-major, RoPE positions assigned inside the
// cache (entry i is rotated to position i). When a batch does not fit, the oldest L window
// tokens leave (handed to the caller first, un-rotated), and the rest shift down with their keys
// re-rotated by -L, so positions never exceed S + W + L.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/kv/kv_policy.h"

namespace edgeinf {

class SinkWindowCache {
 public:
  SinkWindowCache(const AttentionShape& shape, int sink, int window, int segment);

  int64_t capacity() const { return sink_ + window_ + segment_; }
  int64_t segment() const { return segment_; }
  int64_t n_cached() const { return n_cached_; }
  int64_t n_seen() const { return n_seen_; }  // tokens committed since reset
  int64_t n_left() const { return n_left_; }  // tokens that left the window since reset

  // Plans a batch of n_tok <= segment tokens: how many window tokens leave, and the positions.
  void plan(int64_t n_tok);
  int64_t n_leaving() const { return n_leaving_; }

  // Layer step, first part: if tokens leave, writes their pre-RoPE K and their V
  // ([n_leaving, n_kv_head * head_dim]) to k_out / v_out (when not null), then drops them.
  void evict(int layer, float* k_out, float* v_out, kernels::cpu::ThreadPool& pool);
  // Layer step, second part: rotates a.q and a.k to the planned positions, appends K/V, and
  // writes softmax attention over sinks, window and the batch (causal) to a.out.
  void attend(const LayerAttention& a, kernels::cpu::ThreadPool& pool);
  // Commits the planned batch.
  void commit();
  void reset() { n_cached_ = n_leaving_ = n_planned_ = n_seen_ = n_left_ = 0; }
  void save(ByteWriter& w) const;
  Status restore(ByteReader& r);
  size_t bytes() const { return 2 * k_.size() * (k_.empty() ? 0 : k_[0].size()) * sizeof(float); }

 private:
  AttentionShape s_;
  int64_t sink_, window_, segment_;
  int64_t n_cached_ = 0;   // sinks + window entries
  int64_t n_leaving_ = 0;  // planned: window entries leaving before the batch
  int64_t n_planned_ = 0;  // planned: batch size
  int64_t n_seen_ = 0;
  int64_t n_left_ = 0;
  std::vector<int32_t> positions_, shift_;
  std::vector<std::vector<float>> k_, v_;  // per layer [capacity, n_kv_head * head_dim]
};

}  // namespace edgeinf
