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
  k_.assign(size_t(s_.n_layer), std::vector<float>(size_t(capacity() * s_.kv_dim())));
  v_.assign(size_t(s_.n_layer), std::vector<float>(size_t(capacity() * s_.kv_dim())));
}

void SinkWindowCache::plan(int64_t n_tok) {
  c_.plan(n_tok);
  positions_.resize(size_t(n_tok));
  for (int64_t t = 0; t < n_tok; ++t) positions_[size_t(t)] = int32_t(c_.n_cached - c_.n_leaving + t);
}

void SinkWindowCache::evict(int layer, float* k_out, float* v_out, kernels::cpu::ThreadPool& pool) {
  const int64_t n_leaving = c_.n_leaving, sink = c_.sink;
  if (n_leaving == 0) return;
  const int64_t kv_dim = s_.kv_dim();
  float* k = k_[size_t(layer)].data();
  float* v = v_[size_t(layer)].data();
  float* k_leave = k + sink * kv_dim;
  if (k_out != nullptr) {
    // Entry i is rotated to position i: rotating by -i gives back the pre-RoPE key.
    std::memcpy(k_out, k_leave, size_t(n_leaving * kv_dim) * sizeof(float));
    shift_.resize(size_t(n_leaving));
    for (int64_t i = 0; i < n_leaving; ++i) shift_[size_t(i)] = -int32_t(sink + i);
    rotate(s_, k_out, kv_dim, s_.n_kv_head, shift_.data(), n_leaving, pool);
  }
  if (v_out != nullptr) std::memcpy(v_out, v + sink * kv_dim, size_t(n_leaving * kv_dim) * sizeof(float));
  // Shift the remaining window down and re-rotate its keys by -n_leaving.
  const int64_t n_rest = c_.n_cached - sink - n_leaving;
  std::memmove(k_leave, k_leave + n_leaving * kv_dim, size_t(n_rest * kv_dim) * sizeof(float));
  std::memmove(v + sink * kv_dim, v + (sink + n_leaving) * kv_dim, size_t(n_rest * kv_dim) * sizeof(float));
  shift_.assign(size_t(n_rest), -int32_t(n_leaving));
  rotate(s_, k_leave, kv_dim, s_.n_kv_head, shift_.data(), n_rest, pool);
}

void SinkWindowCache::attend(const LayerAttention& a, kernels::cpu::ThreadPool& pool) {
  EDGEINF_CHECK(a.n_tok == c_.n_planned);
  rotate_store_attend(s_, a, positions_.data(), k_[size_t(a.layer)].data(), v_[size_t(a.layer)].data(),
                      c_.n_cached - c_.n_leaving, pool);
}

void SinkWindowCache::save(ByteWriter& w) const {
  c_.save(w);
  save_kv_layers(w, k_, v_, size_t(c_.n_cached * s_.kv_dim()));
}

Status SinkWindowCache::restore(ByteReader& r) {
  EDGEINF_RETURN_IF_ERROR(c_.restore(r));
  const Status st = restore_kv_layers(r, k_, v_, size_t(c_.n_cached * s_.kv_dim()));
  if (!st.ok()) c_.reset();
  return st;
}

}  // namespace edgeinf
