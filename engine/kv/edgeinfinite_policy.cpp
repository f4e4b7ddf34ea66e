// EdgeInfinite policy: folding, memory read, local attention and the gate blend.
#include "engine/kv/edgeinfinite_policy.h"

#include "engine/kv/kv_common.h"
#include "engine/kv/memory_gate.h"
#include "kernels/cpu/ops.h"

namespace edgeinf {

EdgeInfinitePolicy::EdgeInfinitePolicy(const AttentionShape& s, const KvPolicyOptions& o)
    : s_(s), cache_(s, o.sink, o.window, o.segment), delta_(o.update == MemoryUpdate::kDelta), gate_(o.gate) {
  const size_t d = size_t(s.head_dim);
  m_.assign(size_t(s.n_layer), std::vector<float>(size_t(s.n_kv_head) * d * d, 0.0f));
  z_.assign(size_t(s.n_layer), std::vector<float>(size_t(s.n_kv_head) * d, 0.0f));
  k_leave_.resize(size_t(o.segment * s.kv_dim()));
  v_leave_.resize(size_t(o.segment * s.kv_dim()));
  a_mem_.resize(size_t(o.segment * s.q_dim()));
  g_.resize(size_t(o.segment * s.n_head));
}

Status EdgeInfinitePolicy::begin_batch(int64_t n_tok) {
  cache_.plan(n_tok);
  return absl::OkStatus();
}

void EdgeInfinitePolicy::fold(int layer, kernels::cpu::ThreadPool& pool) {
  const int64_t n_leaving = cache_.n_leaving();
  cache_.evict(layer, k_leave_.data(), v_leave_.data(), pool);
  if (n_leaving == 0) return;
  kernels::cpu::memory_compress(memory_compress_params(s_, m_[size_t(layer)].data(), z_[size_t(layer)].data(),
                                                       k_leave_.data(), v_leave_.data(), n_leaving, delta_),
                                pool);
}

bool EdgeInfinitePolicy::attend_parts(const LayerAttention& a, float* a_mem, kernels::cpu::ThreadPool& pool) {
  fold(a.layer, pool);
  // Read before the local step rotates q: the memory is position-free (pre-RoPE).
  const bool has_memory = cache_.n_left() + cache_.n_leaving() > 0;
  if (has_memory) {
    kernels::cpu::memory_decompress(
        memory_decompress_params(s_, m_[size_t(a.layer)].data(), z_[size_t(a.layer)].data(), a.q, a_mem, a.n_tok),
        pool);
  }
  cache_.attend(a, pool);
  return has_memory;
}

void EdgeInfinitePolicy::attend(const LayerAttention& a, kernels::cpu::ThreadPool& pool) {
  if (gate_ == nullptr) {
    // Gate 0: the memory is kept (so a later gate could use it) but never read.
    fold(a.layer, pool);
    cache_.attend(a, pool);
    return;
  }
  if (!attend_parts(a, a_mem_.data(), pool)) return;
  gate_->compute(a.layer, a_mem_.data(), a.out, a.n_tok, g_.data(), pool);
  kernels::GateBlendParams b{g_.data(), a_mem_.data(), a.out, a.out, s_.q_dim(), a.n_tok, s_.n_head, s_.head_dim};
  kernels::cpu::gate_blend_forward(b, pool);
}

void EdgeInfinitePolicy::reset() {
  cache_.reset();
  for (auto& m : m_) std::fill(m.begin(), m.end(), 0.0f);
  for (auto& z : z_) std::fill(z.begin(), z.end(), 0.0f);
}

size_t EdgeInfinitePolicy::state_bytes() const { return cache_.bytes() + layers_bytes(m_) + layers_bytes(z_); }

size_t EdgeInfinitePolicy::max_state_bytes() const { return cache_.max_bytes() + layers_bytes(m_) + layers_bytes(z_); }

void EdgeInfinitePolicy::save_memory(ByteWriter& w) const {
  for (size_t il = 0; il < m_.size(); ++il) {
    w.put_array(m_[il].data(), m_[il].size());
    w.put_array(z_[il].data(), z_[il].size());
  }
}

Status EdgeInfinitePolicy::restore_memory(ByteReader& r) {
  for (size_t il = 0; il < m_.size(); ++il) {
    EDGEINF_RETURN_IF_ERROR(r.get_array(m_[il].data(), m_[il].size()));
    EDGEINF_RETURN_IF_ERROR(r.get_array(z_[il].data(), z_[il].size()));
  }
  return absl::OkStatus();
}

Status EdgeInfinitePolicy::save(ByteWriter& w) const {
  cache_.save(w);
  w.put<uint8_t>(delta_ ? 1 : 0);
  save_memory(w);
  return absl::OkStatus();
}

Status EdgeInfinitePolicy::restore(ByteReader& r) {
  reset();
  Status st = [&]() -> Status {
    EDGEINF_RETURN_IF_ERROR(cache_.restore(r));
    EDGEINF_RETURN_IF_ERROR(r.expect<uint8_t>(delta_ ? 1 : 0, "memory update rule (1 = delta)"));
    return restore_memory(r);
  }();
  if (!st.ok()) reset();
  return st;
}

// Delta bytes: the cache's changes, then a flag and, when tokens were folded, the whole memory.
bool EdgeInfinitePolicy::save_delta(ByteWriter& w) const {
  if (!cache_.save_delta(w)) return false;  // writes nothing when it returns false
  const bool folded = cache_.evicted_since_mark();
  w.put<uint8_t>(folded ? 1 : 0);
  if (folded) save_memory(w);
  return true;
}

size_t EdgeInfinitePolicy::delta_size() const {
  const size_t cache = cache_.delta_size();
  if (cache == 0) return 0;
  return cache + 1 + (cache_.evicted_since_mark() ? layers_bytes(m_) + layers_bytes(z_) : 0);
}

Status EdgeInfinitePolicy::apply_delta(ByteReader& r, kernels::cpu::ThreadPool& pool) {
  Status st = [&]() -> Status {
    EDGEINF_RETURN_IF_ERROR(cache_.apply_delta(r, pool));
    uint8_t folded = 0;
    EDGEINF_RETURN_IF_ERROR(r.get(&folded));
    if (folded > 1) return absl::DataLossError(absl::StrCat(r.what(), ": bad memory flag"));
    if (folded == 1) EDGEINF_RETURN_IF_ERROR(restore_memory(r));
    return absl::OkStatus();
  }();
  if (!st.ok()) reset();
  return st;
}

std::unique_ptr<KvPolicy> make_edgeinfinite_policy(const KvPolicyOptions& o, const AttentionShape& s) {
  return std::make_unique<EdgeInfinitePolicy>(s, o);
}

}  // namespace edgeinf
