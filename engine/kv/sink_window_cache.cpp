// Sink + sliding-window KV storage with in-cache positions; see sink_window_cache.h.
#include "engine/kv/sink_window_cache.h"

#include <algorithm>
#include <cstring>

#include "engine/kv/kv_common.h"

namespace edgeinf {

SinkWindowCache::SinkWindowCache(const AttentionShape& shape, int sink, int window, int segment)
    : s_(shape), sink_(sink), window_(window), segment_(segment) {
  k_.assign(size_t(s_.n_layer), std::vector<float>(size_t(capacity() * s_.kv_dim())));
  v_.assign(size_t(s_.n_layer), std::vector<float>(size_t(capacity() * s_.kv_dim())));
}

void SinkWindowCache::plan(int64_t n_tok) {
  EDGEINF_CHECK(n_tok > 0 && n_tok <= segment_);
  n_planned_ = n_tok;
  n_leaving_ = 0;
  if (n_cached_ + n_tok > capacity()) {
    const int64_t n_window = n_cached_ - std::min(n_cached_, sink_);
    n_leaving_ = std::min(segment_, n_window);
  }
  EDGEINF_CHECK(n_cached_ - n_leaving_ + n_tok <= capacity());
  positions_.resize(size_t(n_tok));
  for (int64_t t = 0; t < n_tok; ++t) positions_[size_t(t)] = int32_t(n_cached_ - n_leaving_ + t);
}

void SinkWindowCache::evict(int layer, float* k_out, float* v_out, kernels::cpu::ThreadPool& pool) {
  if (n_leaving_ == 0) return;
  const int64_t kv_dim = s_.kv_dim();
  float* k = k_[size_t(layer)].data();
  float* v = v_[size_t(layer)].data();
  float* k_leave = k + sink_ * kv_dim;
  if (k_out != nullptr) {
    // Entry i is rotated to position i: rotating by -i gives back the pre-RoPE key.
    std::memcpy(k_out, k_leave, size_t(n_leaving_ * kv_dim) * sizeof(float));
    shift_.resize(size_t(n_leaving_));
    for (int64_t i = 0; i < n_leaving_; ++i) shift_[size_t(i)] = -int32_t(sink_ + i);
    rotate(s_, k_out, kv_dim, s_.n_kv_head, shift_.data(), n_leaving_, pool);
  }
  if (v_out != nullptr) std::memcpy(v_out, v + sink_ * kv_dim, size_t(n_leaving_ * kv_dim) * sizeof(float));
  // Shift the remaining window down and re-rotate its keys by -n_leaving.
  const int64_t n_rest = n_cached_ - sink_ - n_leaving_;
  std::memmove(k_leave, k_leave + n_leaving_ * kv_dim, size_t(n_rest * kv_dim) * sizeof(float));
  std::memmove(v + sink_ * kv_dim, v + (sink_ + n_leaving_) * kv_dim, size_t(n_rest * kv_dim) * sizeof(float));
  shift_.assign(size_t(n_rest), -int32_t(n_leaving_));
  rotate(s_, k_leave, kv_dim, s_.n_kv_head, shift_.data(), n_rest, pool);
}

void SinkWindowCache::attend(const LayerAttention& a, kernels::cpu::ThreadPool& pool) {
  EDGEINF_CHECK(a.n_tok == n_planned_);
  rotate_store_attend(s_, a, positions_.data(), k_[size_t(a.layer)].data(), v_[size_t(a.layer)].data(),
                      n_cached_ - n_leaving_, pool);
}

void SinkWindowCache::commit() {
  n_cached_ += n_planned_ - n_leaving_;
  n_seen_ += n_planned_;
  n_left_ += n_leaving_;
  n_leaving_ = n_planned_ = 0;
}

void SinkWindowCache::save(ByteWriter& w) const {
  w.put<int64_t>(sink_);
  w.put<int64_t>(window_);
  w.put<int64_t>(segment_);
  w.put<int64_t>(n_cached_);
  w.put<int64_t>(n_seen_);
  w.put<int64_t>(n_left_);
  const size_t n = size_t(n_cached_ * s_.kv_dim());
  for (size_t il = 0; il < k_.size(); ++il) {
    w.put_array(k_[il].data(), n);
    w.put_array(v_[il].data(), n);
  }
}

Status SinkWindowCache::restore(ByteReader& r) {
  reset();
  Status st = [&]() -> Status {
    EDGEINF_RETURN_IF_ERROR(r.expect<int64_t>(sink_, "sink"));
    EDGEINF_RETURN_IF_ERROR(r.expect<int64_t>(window_, "window"));
    EDGEINF_RETURN_IF_ERROR(r.expect<int64_t>(segment_, "segment"));
    int64_t n_cached = 0, n_seen = 0, n_left = 0;
    EDGEINF_RETURN_IF_ERROR(r.get(&n_cached));
    EDGEINF_RETURN_IF_ERROR(r.get(&n_seen));
    EDGEINF_RETURN_IF_ERROR(r.get(&n_left));
    if (n_cached < 0 || n_cached > capacity() || n_left < 0 || n_seen != n_cached + n_left) {
      return absl::DataLossError(absl::StrCat(r.what(), ": inconsistent window counters (cached ", n_cached,
                                              ", seen ", n_seen, ", left ", n_left, ")"));
    }
    const size_t n = size_t(n_cached * s_.kv_dim());
    for (size_t il = 0; il < k_.size(); ++il) {
      EDGEINF_RETURN_IF_ERROR(r.get_array(k_[il].data(), n));
      EDGEINF_RETURN_IF_ERROR(r.get_array(v_[il].data(), n));
    }
    n_cached_ = n_cached, n_seen_ = n_seen, n_left_ = n_left;
    return absl::OkStatus();
  }();
  if (!st.ok()) reset();
  return st;
}

}  // namespace edgeinf
