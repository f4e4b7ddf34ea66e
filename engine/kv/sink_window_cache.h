// The fixed-size exact part of StreamingLLM and EdgeInfinite: S sink tokens and a sliding window
// of the most recent W..W+L tokens, per layer, token-major, RoPE positions assigned inside the
// cache (entry i is rotated to position i). When a batch does not fit, the oldest L window
// tokens leave (kept un-rotated for folding when asked), and the rest shift down with their keys
// re-rotated by -L, so positions never exceed S + W + L. The arrays are a KvStore's, so the same
// plan runs on every backend.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/kv/kv_common.h"
#include "engine/kv/kv_policy.h"
#include "engine/kv/kv_store.h"

namespace edgeinf {

// The counters of a sink + window cache: the batch plan (how many window entries leave first) and
// their snapshot bytes.
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

// The RoPE positions of a planned batch (RowPositions), from the counters: the batch's rows at
// their entries, each leaving window entry back to pre-RoPE, and the entries after them moving
// down by the number that leave. The one host function every store's positions come from.
RowPositions sink_window_positions(const SinkWindowCounters& c, std::vector<int32_t>* buffer);

class SinkWindowCache {
 public:
  // The arrays live in `store` (made with store_shape), which the caller keeps alive.
  SinkWindowCache(const AttentionShape& shape, int sink, int window, int segment, KvStore& store);
  // The store a cache of these sizes needs; memory: EdgeInfinite's memory besides it.
  static KvStoreShape store_shape(int sink, int window, int segment, bool memory, const MemoryGate* gate, KvType type);

  int64_t capacity() const { return c_.capacity(); }
  int64_t segment() const { return c_.segment; }
  int64_t n_cached() const { return c_.n_cached; }
  int64_t n_seen() const { return c_.n_seen; }  // tokens committed since reset
  int64_t n_left() const { return c_.n_left; }  // tokens that left the window since reset

  // Plans a batch of n_tok <= segment tokens: how many window tokens leave, and the positions
  // (set on the store, whose rows grow to hold the batch).
  void plan(int64_t n_tok);
  int64_t n_leaving() const { return c_.n_leaving; }

  // Layer step, first part: the planned leaving entries leave the layer (with keep, first to the
  // store's leaving rows as pre-RoPE keys and values, for folding); the rest shift down.
  void evict(int layer, bool keep, kernels::cpu::ThreadPool& pool);
  // Layer step, second part: rotates a.q and a.k to the planned positions, appends K/V, and
  // writes softmax attention over sinks, window and the batch (causal) to a.out.
  void attend(const LayerAttention& a, kernels::cpu::ThreadPool& pool);
  // Commits the planned batch.
  void commit();
  void reset();
  Status save(ByteWriter& w) const;
  Status restore(ByteReader& r);

  // Incremental snapshots (see KvPolicy::save_delta): the entries appended since mark_saved, and
  // the sizes of the evictions since then, which apply_delta replays on the entries that were
  // there (drop from the front of the window, re-rotate the rest): the same arithmetic as evict,
  // so the result is bit-identical. False when no entry of the marked window survives.
  void mark_saved();
  StatusOr<bool> save_delta(ByteWriter& w) const;
  size_t delta_size() const;
  Status apply_delta(ByteReader& r, kernels::cpu::ThreadPool& pool);
  // Whether entries left the window since mark_saved (EdgeInfinite's memory then changed too).
  bool evicted_since_mark() const { return journal_.overflowed || !journal_.evictions.empty(); }

 private:
  // The first entry a delta writes (entries before it are replayed), or -1 when no delta applies.
  int64_t delta_first() const;

  AttentionShape s_;
  SinkWindowCounters c_;
  KvStore& store_;
  std::vector<int32_t> positions_;  // a batch's (sink_window_positions), sized at creation
  // What changed since mark_saved: the entries and tokens then, and each eviction's size, in room
  // reserved at creation for as many evictions as can leave a marked entry in the window (when
  // more happen, overflowed: no delta applies).
  struct Journal {
    int64_t n_cached = 0, n_seen = 0;
    std::vector<int64_t> evictions;
    bool overflowed = false;
  } journal_;
};

}  // namespace edgeinf
