// EdgeInfinite: sinks and a sliding window kept exactly (SinkWindowCache); tokens leaving the
// window are folded, pre-RoPE, into a fixed fp32 memory M [d x d], z [d] per layer and KV head;
// queries read the memory (pre-RoPE) and a trained gate mixes that read-out into the local
// attention. While nothing has been folded (total tokens <= S + W + L) attention is exactly the
// base model's, and with no gate file the memory is kept but never read (gate 0).
#include <cstring>

#include "engine/kv/memory_gate.h"
#include "engine/kv/sink_window_cache.h"
#include "kernels/cpu/ops.h"

namespace edgeinf {
namespace {

class EdgeInfinitePolicy final : public KvPolicy {
 public:
  EdgeInfinitePolicy(const AttentionShape& s, const KvPolicyOptions& o)
      : s_(s), cache_(s, o.sink, o.window, o.segment), delta_(o.update == MemoryUpdate::kDelta), gate_(o.gate) {
    const size_t d = size_t(s.head_dim);
    m_.assign(size_t(s.n_layer), std::vector<float>(size_t(s.n_kv_head) * d * d, 0.0f));
    z_.assign(size_t(s.n_layer), std::vector<float>(size_t(s.n_kv_head) * d, 0.0f));
    k_leave_.resize(size_t(o.segment * s.kv_dim()));
    v_leave_.resize(size_t(o.segment * s.kv_dim()));
    a_mem_.resize(size_t(o.segment * s.q_dim()));
    g_.resize(size_t(o.segment * s.n_head));
  }

  const char* name() const override { return "edgeinfinite"; }
  int64_t max_batch() const override { return cache_.segment(); }

  Status begin_batch(int64_t n_tok) override {
    cache_.plan(n_tok);
    return absl::OkStatus();
  }

  void attend(const LayerAttention& a, kernels::cpu::ThreadPool& pool) override {
    const int64_t n_leaving = cache_.n_leaving();
    cache_.evict(a.layer, k_leave_.data(), v_leave_.data(), pool);
    if (n_leaving > 0) {
      kernels::MemoryCompressParams c;
      c.m = m_[size_t(a.layer)].data();
      c.z = z_[size_t(a.layer)].data();
      c.k = k_leave_.data();
      c.v = v_leave_.data();
      c.kv_stride = s_.kv_dim();
      c.n_tok = n_leaving;
      c.n_kv_head = s_.n_kv_head;
      c.head_dim = s_.head_dim;
      c.delta = delta_;
      kernels::cpu::memory_compress(c, pool);
    }
    // Read before the local step rotates q: the memory is position-free (pre-RoPE).
    const bool read_memory = gate_ != nullptr && cache_.n_left() + n_leaving > 0;
    if (read_memory) {
      kernels::MemoryDecompressParams r;
      r.m = m_[size_t(a.layer)].data();
      r.z = z_[size_t(a.layer)].data();
      r.q = a.q;
      r.q_stride = s_.q_dim();
      r.a_mem = a_mem_.data();
      r.n_tok = a.n_tok;
      r.n_head = s_.n_head;
      r.n_kv_head = s_.n_kv_head;
      r.head_dim = s_.head_dim;
      kernels::cpu::memory_decompress(r, pool);
    }
    cache_.attend(a, pool);
    if (read_memory) {
      gate_->compute(a.layer, a_mem_.data(), a.out, a.n_tok, g_.data(), pool);
      kernels::GateBlendParams b{g_.data(), a_mem_.data(), a.out, a.out, s_.q_dim(), a.n_tok, s_.n_head, s_.head_dim};
      kernels::cpu::gate_blend_forward(b, pool);
    }
  }

  void end_batch(kernels::cpu::ThreadPool&) override { cache_.commit(); }

  void reset() override {
    cache_.reset();
    for (auto& m : m_) std::fill(m.begin(), m.end(), 0.0f);
    for (auto& z : z_) std::fill(z.begin(), z.end(), 0.0f);
  }

  int64_t n_seen() const override { return cache_.n_seen(); }
  int64_t n_kept() const override { return cache_.n_cached(); }
  int64_t n_compressed() const override { return cache_.n_left(); }
  size_t state_bytes() const override {
    size_t bytes = cache_.bytes();
    for (size_t il = 0; il < m_.size(); ++il) bytes += (m_[il].size() + z_[il].size()) * sizeof(float);
    return bytes;
  }

 private:
  AttentionShape s_;
  SinkWindowCache cache_;
  bool delta_;
  const MemoryGate* gate_;
  std::vector<std::vector<float>> m_, z_;  // per layer [n_kv_head, d, d] and [n_kv_head, d]
  std::vector<float> k_leave_, v_leave_, a_mem_, g_;
};

}  // namespace

std::unique_ptr<KvPolicy> make_edgeinfinite_policy(const KvPolicyOptions& o, const AttentionShape& s) {
  return std::make_unique<EdgeInfinitePolicy>(s, o);
}

}  // namespace edgeinf
