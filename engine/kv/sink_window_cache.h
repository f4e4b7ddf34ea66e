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

// The counters of a sink + window cache: the batch plan (how many window entries leave first) and
// their snapshot bytes. Shared by SinkWindowCache and its device twin, so both plan and save alike.
struct SinkWindowCounters {
  int64_t sink = 0, window = 0, segment = 0;
  int64_t n_cached = 0;   // sinks + window entries
  int64_t n_leaving = 0;  // planned: window entries leaving before the batch
  int64_t n_planned = 0;  // planned: batch size
  int64_t n_seen = 0;     // tokens committed since reset
  int64_t n_left = 0;     // tokens that left the window since reset

  int64_t capacity() const { return sink + window + segment; }
  // Plans a batch of n_tok <= segment tokens; the batch goes at entry n_cached - n_leaving.
  void plan(int64_t n_tok);
  void commit();
  void reset() { n_cached = n_leaving = n_planned = n_seen = n_left = 0; }
  // S, W, L and the three totals; restore checks the shape and the totals' consistency (reset on error).
  void save(ByteWriter& w) const;
  Status restore(ByteReader& r);
};

class SinkWindowCache {
 public:
  SinkWindowCache(const AttentionShape& shape, int sink, int window, int segment);

  int64_t capacity() const { return c_.capacity(); }
  int64_t segment() const { return c_.segment; }
  int64_t n_cached() const { return c_.n_cached; }
  int64_t n_seen() const { return c_.n_seen; }  // tokens committed since reset
  int64_t n_left() const { return c_.n_left; }  // tokens that left the window since reset

  // Plans a batch of n_tok <= segment tokens: how many window tokens leave, and the positions.
  void plan(int64_t n_tok);
  int64_t n_leaving() const { return c_.n_leaving; }

  // Layer step, first part: if tokens leave, writes their pre-RoPE K and their V
  // ([n_leaving, n_kv_head * head_dim]) to k_out / v_out (when not null), then drops them.
  void evict(int layer, float* k_out, float* v_out, kernels::cpu::ThreadPool& pool);
  // Layer step, second part: rotates a.q and a.k to the planned positions, appends K/V, and
  // writes softmax attention over sinks, window and the batch (causal) to a.out.
  void attend(const LayerAttention& a, kernels::cpu::ThreadPool& pool);
  // Commits the planned batch.
  void commit() { c_.commit(); }
  void reset() { c_.reset(); }
  void save(ByteWriter& w) const;
  Status restore(ByteReader& r);
  size_t bytes() const { return 2 * k_.size() * (k_.empty() ? 0 : k_[0].size()) * sizeof(float); }

 private:
  AttentionShape s_;
  SinkWindowCounters c_;
  std::vector<int32_t> positions_, shift_;
  std::vector<std::vector<float>> k_, v_;  // per layer [capacity, n_kv_head * head_dim]
};

}  // namespace edgeinf
