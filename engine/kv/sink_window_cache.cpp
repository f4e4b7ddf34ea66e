// Sink + sliding-window KV storage with in-cache positions; see sink_window_cache.h.
#include "engine/kv/sink_window_cache.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace edgeinf {

void SinkWindowCounters::plan(int64_t n_tok) {
  EDGEINF_CHECK(n_tok > 0 && n_tok <= segment);
  n_planned = n_tok;
  n_leaving = 0;
  if (n_cached + n_tok > capacity()) {
    const int64_t n_window = n_cached - std::min(n_cached, sink);
    n_leaving = std::min(segment, n_window);
  }
  EDGEINF_CHECK(n_cached - n_leaving + n_tok <= capacity());
}

void SinkWindowCounters::commit() {
  n_cached += n_planned - n_leaving;
  n_seen += n_planned;
  n_left += n_leaving;
  n_leaving = n_planned = 0;
}

void SinkWindowCounters::save(ByteWriter& w) const {
  w.put<int64_t>(sink);
  w.put<int64_t>(window);
  w.put<int64_t>(segment);
  w.put<int64_t>(n_cached);
  w.put<int64_t>(n_seen);
  w.put<int64_t>(n_left);
}

Status SinkWindowCounters::restore(ByteReader& r) {
  reset();
  Status st = [&]() -> Status {
    EDGEINF_RETURN_IF_ERROR(r.expect<int64_t>(sink, "sink"));
    EDGEINF_RETURN_IF_ERROR(r.expect<int64_t>(window, "window"));
    EDGEINF_RETURN_IF_ERROR(r.expect<int64_t>(segment, "segment"));
    int64_t cached = 0, seen = 0, left = 0;
    EDGEINF_RETURN_IF_ERROR(r.get(&cached));
    EDGEINF_RETURN_IF_ERROR(r.get(&seen));
    EDGEINF_RETURN_IF_ERROR(r.get(&left));
    if (cached < 0 || cached > capacity() || left < 0 || seen != cached + left) {
      return absl::DataLossError(absl::StrCat(r.what(), ": inconsistent window counters (cached ", cached, ", seen ",
                                              seen, ", left ", left, ")"));
    }
    n_cached = cached, n_seen = seen, n_left = left;
    return absl::OkStatus();
  }();
  if (!st.ok()) reset();
  return st;
}

RowPositions sink_window_positions(const SinkWindowCounters& c, std::vector<int32_t>* buffer) {
  const int64_t n_tok = c.n_planned, n_leaving = c.n_leaving;
  const int64_t n_rest = n_leaving > 0 ? c.n_cached - c.sink - n_leaving : 0;
  buffer->resize(size_t(n_tok + n_leaving + n_rest));
  int32_t* p = buffer->data();
  // Entry i is rotated to position i: the batch goes after the entries that stay, a leaving entry
  // rotates back by minus its entry, and the entries after it move down by n_leaving.
  for (int64_t t = 0; t < n_tok; ++t) p[t] = int32_t(c.n_cached - n_leaving + t);
  for (int64_t i = 0; i < n_leaving; ++i) p[n_tok + i] = -int32_t(c.sink + i);
  for (int64_t i = 0; i < n_rest; ++i) p[n_tok + n_leaving + i] = -int32_t(n_leaving);
  return RowPositions{std::span<const int32_t>(p, size_t(n_tok)),
                      std::span<const int32_t>(p + n_tok, size_t(n_leaving)),
                      std::span<const int32_t>(p + n_tok + n_leaving, size_t(n_rest))};
}

SinkWindowCache::SinkWindowCache(const AttentionShape& shape, int sink, int window, int segment, KvStore& store)
    : s_(shape), c_{sink, window, segment}, store_(store) {
  // The most a batch's positions take: the batch, the leaving entries and the rest of the window.
  positions_.reserve(size_t(2 * c_.segment + c_.capacity()));
  // Each eviction drops at least one entry, so after window + segment + 1 of them no entry of the
  // marked window is left.
  journal_.evictions.reserve(size_t(c_.window + c_.segment + 1));
}

KvStoreShape SinkWindowCache::store_shape(int sink, int window, int segment, bool memory, const MemoryGate* gate,
                                          KvType type) {
  return KvStoreShape{int64_t(sink) + window + segment, segment, memory, gate, type};
}

void SinkWindowCache::plan(int64_t n_tok) {
  c_.plan(n_tok);
  store_.reserve(c_.n_cached - c_.n_leaving + n_tok);
  store_.set_positions(sink_window_positions(c_, &positions_));
}

void SinkWindowCache::evict(int layer, bool keep, kernels::cpu::ThreadPool& pool) {
  if (c_.n_leaving == 0) return;
  store_.evict(layer, c_.sink, c_.n_leaving, c_.n_cached, keep, pool);
}

void SinkWindowCache::attend(const LayerAttention& a, kernels::cpu::ThreadPool& pool) {
  EDGEINF_CHECK(a.n_tok == c_.n_planned);
  store_.rotate_store_attend(a, c_.n_cached - c_.n_leaving, pool);
}

void SinkWindowCache::commit() {
  if (c_.n_leaving > 0) {
    if (journal_.evictions.size() < journal_.evictions.capacity()) {
      journal_.evictions.push_back(c_.n_leaving);
    } else {
      journal_.overflowed = true;
    }
  }
  c_.commit();
}

void SinkWindowCache::reset() {
  c_.reset();
  mark_saved();
}

Status SinkWindowCache::save(ByteWriter& w) const {
  c_.save(w);
  return store_.save_rows(w, 0, c_.n_cached);
}

Status SinkWindowCache::restore(ByteReader& r) {
  EDGEINF_RETURN_IF_ERROR(c_.restore(r));
  const Status st = store_.load_rows(r, 0, c_.n_cached);
  if (!st.ok()) c_.reset();
  mark_saved();
  return st;
}

void SinkWindowCache::mark_saved() {
  journal_.n_cached = c_.n_cached;
  journal_.n_seen = c_.n_seen;
  journal_.evictions.clear();
  journal_.overflowed = false;
}

int64_t SinkWindowCache::delta_first() const {
  if (journal_.overflowed) return -1;
  const int64_t sink = c_.sink;
  int64_t dropped = 0;
  for (int64_t n : journal_.evictions) dropped += n;
  // Entries of the marked window that are still there, below the ones appended since.
  const int64_t old_window = std::max<int64_t>(0, journal_.n_cached - sink);
  const int64_t first = journal_.evictions.empty() ? journal_.n_cached : sink + old_window - dropped;
  if (first <= (journal_.evictions.empty() ? 0 : sink) || first > c_.n_cached) return -1;
  return first;
}

size_t SinkWindowCache::delta_size() const {
  const int64_t first = delta_first();
  if (first < 0) return 0;
  return 2 * sizeof(int64_t) + sizeof(uint32_t) + journal_.evictions.size() * sizeof(int64_t) + 6 * sizeof(int64_t) +
         sizeof(int64_t) + 2 * size_t(s_.n_layer) * size_t(c_.n_cached - first) * store_.row_bytes();
}

// Delta bytes: the marked state's entries and tokens; the evictions since; the counters now; the
// first entry written and every layer's entries from there on (K then V).
StatusOr<bool> SinkWindowCache::save_delta(ByteWriter& w) const {
  const int64_t first = delta_first();
  if (first < 0) return false;
  w.put<int64_t>(journal_.n_cached);
  w.put<int64_t>(journal_.n_seen);
  w.put<uint32_t>(uint32_t(journal_.evictions.size()));
  w.put_array(journal_.evictions.data(), journal_.evictions.size());
  c_.save(w);
  w.put<int64_t>(first);
  EDGEINF_RETURN_IF_ERROR(store_.save_rows(w, first, c_.n_cached));
  return true;
}

Status SinkWindowCache::apply_delta(ByteReader& r, kernels::cpu::ThreadPool& pool) {
  Status st = [&]() -> Status {
    int64_t mark_cached = 0, mark_seen = 0;
    EDGEINF_RETURN_IF_ERROR(r.get(&mark_cached));
    EDGEINF_RETURN_IF_ERROR(r.get(&mark_seen));
    if (mark_cached != c_.n_cached || mark_seen != c_.n_seen) {
      return absl::FailedPreconditionError(absl::StrCat(r.what(), ": the changes apply to a state of ", mark_seen,
                                                        " tokens (", mark_cached, " cached); this one has ", c_.n_seen,
                                                        " (", c_.n_cached, ")"));
    }
    uint32_t n_evictions = 0;
    EDGEINF_RETURN_IF_ERROR(r.get(&n_evictions));
    if (n_evictions > r.remaining() / sizeof(int64_t))
      return absl::DataLossError(absl::StrCat(r.what(), ": truncated"));
    std::vector<int64_t> evictions(n_evictions);
    EDGEINF_RETURN_IF_ERROR(r.get_array(evictions.data(), evictions.size()));
    // Replay the evictions on the entries that were there: each drops only marked entries.
    int64_t rows = c_.n_cached, dropped = 0;
    for (int64_t n : evictions) {
      if (n <= 0 || n > c_.segment || rows - c_.sink - n <= 0) {
        return absl::DataLossError(absl::StrCat(r.what(), ": an eviction of ", n, " entries does not fit ", rows));
      }
      // The positions of an eviction of n entries out of `rows` (a batch of none).
      SinkWindowCounters replay = c_;
      replay.n_cached = rows, replay.n_leaving = n, replay.n_planned = 0;
      RowPositions p = sink_window_positions(replay, &positions_);
      store_.set_positions(p);
      for (int il = 0; il < s_.n_layer; ++il) store_.evict(il, c_.sink, n, rows, false, pool);
      rows -= n;
      dropped += n;
    }
    SinkWindowCounters now{c_.sink, c_.window, c_.segment};
    EDGEINF_RETURN_IF_ERROR(now.restore(r));
    int64_t first = 0;
    EDGEINF_RETURN_IF_ERROR(r.get(&first));
    if (first != rows || now.n_cached < first || now.n_seen < mark_seen || now.n_left != c_.n_left + dropped) {
      return absl::DataLossError(absl::StrCat(r.what(), ": inconsistent changes (first entry ", first, ", ", rows,
                                              " kept, ", now.n_cached, " cached)"));
    }
    EDGEINF_RETURN_IF_ERROR(store_.load_rows(r, first, now.n_cached));
    c_ = now;
    return absl::OkStatus();
  }();
  if (!st.ok()) c_.reset();
  mark_saved();
  return st;
}

}  // namespace edgeinf
