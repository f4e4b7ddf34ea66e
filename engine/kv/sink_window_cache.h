// The fixed-size exact part of StreamingLLM and EdgeInfinite: S sink tokens and a sliding window
// of the most recent W..W+L tokens, per layer, token-major, RoPE positions assigned inside the
// cache (entry i is rotated to position i). When a batch does not fit, the oldest L window
// tokens leave (handed to the caller first, un-rotated), and the rest shift down with their keys
// re-rotated by -L, so positions never exceed S + W + L.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/kv/kv_common.h"
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
  // Grows the arrays to hold the batch.
  void plan(int64_t n_tok);
  int64_t n_leaving() const { return c_.n_leaving; }

  // Layer step, first part: if tokens leave, writes their pre-RoPE K and their V
  // ([n_leaving, n_kv_head * head_dim]) to k_out / v_out (when not null), then drops them.
  void evict(int layer, float* k_out, float* v_out, kernels::cpu::ThreadPool& pool);
  // Layer step, second part: rotates a.q and a.k to the planned positions, appends K/V, and
  // writes softmax attention over sinks, window and the batch (causal) to a.out.
  void attend(const LayerAttention& a, kernels::cpu::ThreadPool& pool);
  // Commits the planned batch.
  void commit();
  void reset();
  void save(ByteWriter& w) const;
  Status restore(ByteReader& r);
  // Bytes held now, and at most (every entry of S + W + L).
  size_t bytes() const { return layers_bytes(k_) + layers_bytes(v_); }
  size_t max_bytes() const;

  // Incremental snapshots (see KvPolicy::save_delta): the entries appended since mark_saved, and
  // the sizes of the evictions since then, which apply_delta replays on the entries that were
  // there (drop from the front of the window, re-rotate the rest): the same arithmetic as evict,
  // so the result is bit-identical. False when no entry of the marked window survives.
  void mark_saved();
  bool save_delta(ByteWriter& w) const;
  size_t delta_size() const;
  Status apply_delta(ByteReader& r, kernels::cpu::ThreadPool& pool);
  // Whether entries left the window since mark_saved (EdgeInfinite's memory then changed too).
  bool evicted_since_mark() const { return !journal_.evictions.empty(); }

 private:
  // The first entry a delta writes (entries before it are replayed), or -1 when no delta applies.
  int64_t delta_first() const;
  // Drops n window entries from the front of the first n_rows entries and re-rotates the rest by -n.
  void shift_window(int layer, int64_t n_rows, int64_t n, kernels::cpu::ThreadPool& pool);

  AttentionShape s_;
  SinkWindowCounters c_;
  std::vector<int32_t> positions_, shift_;
  std::vector<std::vector<float>> k_, v_;  // per layer [entries, n_kv_head * head_dim], growing to capacity
  // What changed since mark_saved: the entries and tokens then, and each eviction's size.
  struct Journal {
    int64_t n_cached = 0, n_seen = 0;
    std::vector<int64_t> evictions;
  } journal_;
};

}  // namespace edgeinf
