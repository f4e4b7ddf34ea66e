// Sink + sliding-window KV storage with in-cache positions; see sink_window_cache.h.
#include "engine/kv/sink_window_cache.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "engine/kv/kv_common.h"

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

SinkWindowCache::SinkWindowCache(const AttentionShape& shape, int sink, int window, int segment)
    : s_(shape), c_{sink, window, segment} {
  // Empty until tokens arrive: plan() grows the arrays with what the cache holds.
  k_.resize(size_t(s_.n_layer));
  v_.resize(size_t(s_.n_layer));
}

size_t SinkWindowCache::max_bytes() const {
  return 2 * size_t(s_.n_layer) * size_t(capacity() * s_.kv_dim()) * sizeof(float);
}

void SinkWindowCache::plan(int64_t n_tok) {
  c_.plan(n_tok);
  const size_t kv_dim = size_t(s_.kv_dim());
  const size_t need = size_t(c_.n_cached - c_.n_leaving + n_tok) * kv_dim;
  grow_layers(k_, need, size_t(capacity()) * kv_dim, kv_dim);
  grow_layers(v_, need, size_t(capacity()) * kv_dim, kv_dim);
  positions_.resize(size_t(n_tok));
  for (int64_t t = 0; t < n_tok; ++t) positions_[size_t(t)] = int32_t(c_.n_cached - c_.n_leaving + t);
}

void SinkWindowCache::shift_window(int layer, int64_t n_rows, int64_t n, kernels::cpu::ThreadPool& pool) {
  const int64_t kv_dim = s_.kv_dim(), sink = c_.sink;
  float* k = k_[size_t(layer)].data() + sink * kv_dim;
  float* v = v_[size_t(layer)].data() + sink * kv_dim;
  // Shift the remaining window down and re-rotate its keys by -n.
  const int64_t n_rest = n_rows - sink - n;
  std::memmove(k, k + n * kv_dim, size_t(n_rest * kv_dim) * sizeof(float));
  std::memmove(v, v + n * kv_dim, size_t(n_rest * kv_dim) * sizeof(float));
  shift_.assign(size_t(n_rest), -int32_t(n));
  rotate(s_, k, kv_dim, s_.n_kv_head, shift_.data(), n_rest, pool);
}

void SinkWindowCache::evict(int layer, float* k_out, float* v_out, kernels::cpu::ThreadPool& pool) {
  const int64_t n_leaving = c_.n_leaving, sink = c_.sink;
  if (n_leaving == 0) return;
  const int64_t kv_dim = s_.kv_dim();
  const float* k_leave = k_[size_t(layer)].data() + sink * kv_dim;
  if (k_out != nullptr) {
    // Entry i is rotated to position i: rotating by -i gives back the pre-RoPE key.
    std::memcpy(k_out, k_leave, size_t(n_leaving * kv_dim) * sizeof(float));
    shift_.resize(size_t(n_leaving));
    for (int64_t i = 0; i < n_leaving; ++i) shift_[size_t(i)] = -int32_t(sink + i);
    rotate(s_, k_out, kv_dim, s_.n_kv_head, shift_.data(), n_leaving, pool);
  }
  if (v_out != nullptr) {
    std::memcpy(v_out, v_[size_t(layer)].data() + sink * kv_dim, size_t(n_leaving * kv_dim) * sizeof(float));
  }
  shift_window(layer, c_.n_cached, n_leaving, pool);
}

void SinkWindowCache::attend(const LayerAttention& a, kernels::cpu::ThreadPool& pool) {
  EDGEINF_CHECK(a.n_tok == c_.n_planned);
  rotate_store_attend(s_, a, positions_.data(), k_[size_t(a.layer)].data(), v_[size_t(a.layer)].data(),
                      c_.n_cached - c_.n_leaving, pool);
}

void SinkWindowCache::commit() {
  if (c_.n_leaving > 0) journal_.evictions.push_back(c_.n_leaving);
  c_.commit();
}

void SinkWindowCache::reset() {
  c_.reset();
  mark_saved();
}

void SinkWindowCache::save(ByteWriter& w) const {
  c_.save(w);
  save_kv_layers(w, k_, v_, 0, size_t(c_.n_cached * s_.kv_dim()));
}

Status SinkWindowCache::restore(ByteReader& r) {
  EDGEINF_RETURN_IF_ERROR(c_.restore(r));
  const size_t kv_dim = size_t(s_.kv_dim()), n = size_t(c_.n_cached) * kv_dim;
  grow_layers(k_, n, size_t(capacity()) * kv_dim, kv_dim);
  grow_layers(v_, n, size_t(capacity()) * kv_dim, kv_dim);
  const Status st = restore_kv_layers(r, k_, v_, 0, n);
  if (!st.ok()) c_.reset();
  mark_saved();
  return st;
}

void SinkWindowCache::mark_saved() {
  journal_.n_cached = c_.n_cached;
  journal_.n_seen = c_.n_seen;
  journal_.evictions.clear();
}

int64_t SinkWindowCache::delta_first() const {
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
         sizeof(int64_t) + 2 * size_t(s_.n_layer) * size_t((c_.n_cached - first) * s_.kv_dim()) * sizeof(float);
}

// Delta bytes: the marked state's entries and tokens; the evictions since; the counters now; the
// first entry written and every layer's entries from there on (K then V).
bool SinkWindowCache::save_delta(ByteWriter& w) const {
  const int64_t first = delta_first();
  if (first < 0) return false;
  w.put<int64_t>(journal_.n_cached);
  w.put<int64_t>(journal_.n_seen);
  w.put<uint32_t>(uint32_t(journal_.evictions.size()));
  w.put_array(journal_.evictions.data(), journal_.evictions.size());
  c_.save(w);
  w.put<int64_t>(first);
  save_kv_layers(w, k_, v_, size_t(first * s_.kv_dim()), size_t(c_.n_cached * s_.kv_dim()));
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
      for (int il = 0; il < s_.n_layer; ++il) shift_window(il, rows, n, pool);
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
    const size_t kv_dim = size_t(s_.kv_dim());
    grow_layers(k_, size_t(now.n_cached) * kv_dim, size_t(capacity()) * kv_dim, kv_dim);
    grow_layers(v_, size_t(now.n_cached) * kv_dim, size_t(capacity()) * kv_dim, kv_dim);
    EDGEINF_RETURN_IF_ERROR(restore_kv_layers(r, k_, v_, size_t(first) * kv_dim, size_t(now.n_cached) * kv_dim));
    c_ = now;
    return absl::OkStatus();
  }();
  if (!st.ok()) c_.reset();
  mark_saved();
  return st;
}

}  // namespace edgeinf
