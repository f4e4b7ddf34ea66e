// SnapKV selection (and the shared machinery PyramidKV reuses); see snapkv_policy.h.
#include "engine/kv/snapkv_policy.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "engine/kv/kv_common.h"
#include "kernels/common/kv_rows.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/vec.h"

namespace edgeinf {

SelectionPolicy::SelectionPolicy(const char* name, const AttentionShape& s, const KvPolicyOptions& o,
                                 std::vector<int64_t> layer_budgets)
    : name_(name),
      s_(s),
      segment_(o.segment),
      obs_window_(o.obs_window),
      pool_kernel_(o.pool_kernel),
      budget_(std::move(layer_budgets)),
      type_(o.kv_type),
      row_bytes_(kernels::kv_value_offset(o.kv_type, s.head_dim)) {
  for (int il = 0; il < s.n_layer; ++il) {
    capacity_.push_back(budget_[size_t(il)] + segment_);
    k_.emplace_back(size_t(s.n_kv_head * capacity_.back()) * row_bytes_);
    v_.emplace_back(size_t(s.n_kv_head * capacity_.back()) * row_bytes_);
    recent_q_.emplace_back(size_t(obs_window_ * s.q_dim()));
    pos_.emplace_back(size_t(s.n_kv_head * capacity_.back()), -1);
  }
  n_entries_.assign(size_t(s.n_layer), 0);
  n_recent_q_.assign(size_t(s.n_layer), 0);
  positions_.reserve(size_t(segment_));
  // A selection's scratch, one slice per KV head (they run in parallel).
  max_capacity_ = *std::max_element(capacity_.begin(), capacity_.end());
  const size_t scratch = size_t(s.n_kv_head * max_capacity_);
  votes_.resize(scratch);
  scores_.resize(scratch);
  pooled_.resize(scratch);
  order_.resize(scratch);
}

void SelectionPolicy::reset() {
  std::fill(n_entries_.begin(), n_entries_.end(), 0);
  std::fill(n_recent_q_.begin(), n_recent_q_.end(), 0);
  n_seen_ = n_batch_ = n_evicted_ = 0;
}

std::vector<int32_t> SelectionPolicy::kept_positions(int layer, int kv_head) const {
  EDGEINF_CHECK(layer >= 0 && layer < s_.n_layer && kv_head >= 0 && kv_head < s_.n_kv_head);
  const int32_t* p = pos_[size_t(layer)].data() + kv_head * capacity_[size_t(layer)];
  return std::vector<int32_t>(p, p + n_entries_[size_t(layer)]);
}

int64_t SelectionPolicy::n_kept() const { return *std::max_element(n_entries_.begin(), n_entries_.end()); }

size_t SelectionPolicy::state_bytes() const { return layers_bytes(k_) + layers_bytes(v_); }

Status SelectionPolicy::begin_batch(int64_t n_tok) {
  EDGEINF_CHECK(n_tok > 0 && n_tok <= segment_);
  n_batch_ = n_tok;
  positions_.resize(size_t(n_tok));
  for (int64_t t = 0; t < n_tok; ++t) positions_[size_t(t)] = int32_t(n_seen_ + t);
  return absl::OkStatus();
}

void SelectionPolicy::attend(const LayerAttention& a, kernels::cpu::ThreadPool& pool) {
  const int il = a.layer;
  const int64_t hd = s_.head_dim, cap = capacity_[size_t(il)], base = n_entries_[size_t(il)];
  EDGEINF_CHECK(base + a.n_tok <= cap);
  rotate(s_, a.q, s_.q_dim(), s_.n_head, positions_.data(), a.n_tok, pool);
  rotate(s_, a.k, s_.kv_dim(), s_.n_kv_head, positions_.data(), a.n_tok, pool);
  for (int g = 0; g < s_.n_kv_head; ++g) {
    for (int64_t t = 0; t < a.n_tok; ++t) {
      const size_t dst = size_t(g * cap + base + t) * row_bytes_;
      kernels::encode_kv_values(type_, a.k + t * s_.kv_dim() + g * hd, k_[size_t(il)].data() + dst, hd);
      kernels::encode_kv_values(type_, a.v + t * s_.kv_dim() + g * hd, v_[size_t(il)].data() + dst, hd);
      pos_[size_t(il)][size_t(g * cap + base + t)] = positions_[size_t(t)];
    }
  }
  kernels::AttentionParams p;
  p.q = a.q;
  p.q_stride = s_.q_dim();
  p.k = k_[size_t(il)].data();
  p.v = v_[size_t(il)].data();
  p.kv_type = type_;
  p.kv_stride = hd;
  p.kv_head_stride = cap * hd;
  p.out = a.out;
  p.out_stride = s_.q_dim();
  p.n_tok = a.n_tok;
  p.n_kv = base + a.n_tok;
  p.causal_base = base;
  p.n_head = s_.n_head;
  p.n_kv_head = s_.n_kv_head;
  p.head_dim = s_.head_dim;
  p.scale = 1.0f / std::sqrt(float(hd));
  kernels::cpu::attention_forward(p, pool);
  // Remember the last obs_window rotated queries for the next selection.
  std::vector<float>& rq = recent_q_[size_t(il)];
  const int64_t keep_new = std::min(a.n_tok, obs_window_);
  const int64_t keep_old = std::min(n_recent_q_[size_t(il)], obs_window_ - keep_new);
  std::memmove(rq.data(), rq.data() + (n_recent_q_[size_t(il)] - keep_old) * s_.q_dim(),
               size_t(keep_old * s_.q_dim()) * sizeof(float));
  std::memcpy(rq.data() + keep_old * s_.q_dim(), a.q + (a.n_tok - keep_new) * s_.q_dim(),
              size_t(keep_new * s_.q_dim()) * sizeof(float));
  n_recent_q_[size_t(il)] = keep_old + keep_new;
}

void SelectionPolicy::end_batch(kernels::cpu::ThreadPool& pool) {
  n_seen_ += n_batch_;
  for (int il = 0; il < s_.n_layer; ++il) {
    n_entries_[size_t(il)] += n_batch_;
    // Select once a layer has a segment's worth of entries beyond its budget.
    if (n_entries_[size_t(il)] + segment_ > capacity_[size_t(il)]) select(il, pool);
  }
}

void SelectionPolicy::select(int il, kernels::cpu::ThreadPool& pool) {
  const int64_t hd = s_.head_dim, cap = capacity_[size_t(il)], n = n_entries_[size_t(il)];
  const int64_t budget = budget_[size_t(il)];
  if (n <= budget) return;
  const int64_t n_obs = std::min(n_recent_q_[size_t(il)], obs_window_);
  const int64_t n_prefix = n - n_obs;  // candidates: everything before the observation window
  const int64_t n_pick = budget - n_obs;
  const int group = s_.n_head / s_.n_kv_head;
  const float scale = 1.0f / std::sqrt(float(hd));
  const kernels::cpu::VecOps& vec = kernels::cpu::vec_ops();
  pool.run(s_.n_kv_head, [&](int64_t g) {
    uint8_t* k = k_[size_t(il)].data() + size_t(g * cap) * row_bytes_;
    uint8_t* v = v_[size_t(il)].data() + size_t(g * cap) * row_bytes_;
    int32_t* pos = pos_[size_t(il)].data() + g * cap;
    float* votes = votes_.data() + g * max_capacity_;
    float* scores = scores_.data() + g * max_capacity_;
    float* pooled = pooled_.data() + g * max_capacity_;
    int64_t* order = order_.data() + g * max_capacity_;
    std::fill(votes, votes + n_prefix, 0.0f);
    // Each window query (of every head in the group) votes with its softmax over the keys it sees.
    for (int h = int(g) * group; h < (int(g) + 1) * group; ++h) {
      for (int64_t i = 0; i < n_obs; ++i) {
        const float* q = recent_q_[size_t(il)].data() + i * s_.q_dim() + h * hd;
        const int64_t n_visible = n_prefix + i + 1;
        float mx = -INFINITY;
        for (int64_t j = 0; j < n_visible; ++j) {
          scores[j] = vec.dot_row(type_, k + size_t(j) * row_bytes_, q, hd) * scale;
          mx = std::max(mx, scores[j]);
        }
        const float inv = 1.0f / vec.exp_sum(scores, mx, n_visible);
        for (int64_t j = 0; j < n_prefix; ++j) votes[j] += scores[j] * inv;
      }
    }
    // Max-pool the votes along the keys so neighbours of a strong key survive with it.
    const int64_t r = pool_kernel_ / 2;
    for (int64_t j = 0; j < n_prefix; ++j) {
      float m = -INFINITY;
      for (int64_t x = std::max<int64_t>(0, j - r); x <= std::min(n_prefix - 1, j + r); ++x) m = std::max(m, votes[x]);
      pooled[j] = m;
    }
    std::iota(order, order + n_prefix, int64_t(0));
    std::partial_sort(order, order + n_pick, order + n_prefix,
                      [&](int64_t a, int64_t b) { return pooled[a] > pooled[b] || (pooled[a] == pooled[b] && a < b); });
    std::sort(order, order + n_pick);
    for (int64_t i = 0; i < n_obs; ++i) order[n_pick + i] = n_prefix + i;
    // Compact in place, in position order (destination index never exceeds the source).
    for (size_t dst = 0; dst < size_t(n_pick + n_obs); ++dst) {
      const int64_t src = order[dst];
      if (src == int64_t(dst)) continue;
      std::memcpy(k + dst * row_bytes_, k + size_t(src) * row_bytes_, row_bytes_);
      std::memcpy(v + dst * row_bytes_, v + size_t(src) * row_bytes_, row_bytes_);
      pos[dst] = pos[src];
    }
  });
  n_evicted_ += (il == 0) ? n - budget : 0;
  n_entries_[size_t(il)] = budget;
}

// Keeps its arrays on the host: the store maker is not used.
StatusOr<std::unique_ptr<KvPolicy>> make_snapkv_policy(const KvPolicyOptions& o, const AttentionShape& s,
                                                       const KvStoreMaker&) {
  const int64_t budget = o.budget > 0 ? o.budget : int64_t(o.sink) + o.window;
  return std::unique_ptr<KvPolicy>(
      std::make_unique<SelectionPolicy>("snapkv", s, o, std::vector<int64_t>(size_t(s.n_layer), budget)));
}

Status SelectionPolicy::save(ByteWriter& w) const {
  w.put<int64_t>(s_.n_layer);
  w.put<int64_t>(segment_);
  w.put<int64_t>(obs_window_);
  w.put<int64_t>(n_seen_);
  w.put<int64_t>(n_evicted_);
  for (int il = 0; il < s_.n_layer; ++il) {
    w.put<int64_t>(budget_[size_t(il)]);
    w.put<int64_t>(n_entries_[size_t(il)]);
    w.put<int64_t>(n_recent_q_[size_t(il)]);
    w.put_array(k_[size_t(il)].data(), k_[size_t(il)].size());
    w.put_array(v_[size_t(il)].data(), v_[size_t(il)].size());
    w.put_array(recent_q_[size_t(il)].data(), recent_q_[size_t(il)].size());
  }
  return absl::OkStatus();
}

Status SelectionPolicy::restore(ByteReader& r) {
  reset();
  Status st = [&]() -> Status {
    EDGEINF_RETURN_IF_ERROR(r.expect<int64_t>(s_.n_layer, "layer count"));
    EDGEINF_RETURN_IF_ERROR(r.expect<int64_t>(segment_, "segment"));
    EDGEINF_RETURN_IF_ERROR(r.expect<int64_t>(obs_window_, "observation window"));
    EDGEINF_RETURN_IF_ERROR(r.get(&n_seen_));
    EDGEINF_RETURN_IF_ERROR(r.get(&n_evicted_));
    for (int il = 0; il < s_.n_layer; ++il) {
      EDGEINF_RETURN_IF_ERROR(r.expect<int64_t>(budget_[size_t(il)], "layer budget"));
      int64_t& n_entries = n_entries_[size_t(il)];
      int64_t& n_recent = n_recent_q_[size_t(il)];
      EDGEINF_RETURN_IF_ERROR(r.get(&n_entries));
      EDGEINF_RETURN_IF_ERROR(r.get(&n_recent));
      if (n_entries < 0 || n_entries > capacity_[size_t(il)] || n_recent < 0 || n_recent > obs_window_ ||
          n_entries > n_seen_) {
        return absl::DataLossError(absl::StrCat(r.what(), ": inconsistent counters in layer ", il));
      }
      EDGEINF_RETURN_IF_ERROR(r.get_array(k_[size_t(il)].data(), k_[size_t(il)].size()));
      EDGEINF_RETURN_IF_ERROR(r.get_array(v_[size_t(il)].data(), v_[size_t(il)].size()));
      EDGEINF_RETURN_IF_ERROR(r.get_array(recent_q_[size_t(il)].data(), recent_q_[size_t(il)].size()));
    }
    if (n_seen_ < 0 || n_evicted_ < 0 || n_evicted_ > n_seen_) {
      return absl::DataLossError(absl::StrCat(r.what(), ": inconsistent token counters"));
    }
    return absl::OkStatus();
  }();
  for (auto& p : pos_) std::fill(p.begin(), p.end(), -1);
  if (!st.ok()) reset();
  return st;
}

}  // namespace edgeinf
