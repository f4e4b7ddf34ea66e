// Causal grouped-query softmax attention on the CPU. One task per (query head, block of queries):
// scores S = Q.K^T for the block come from the register-blocked panel product, each row is
// soft-maxed over the keys it may see, and P.V is summed with the output held in registers.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/ops.h"
#include "kernels/cpu/vec.h"

namespace edgeinf::kernels::cpu {
namespace {
constexpr int64_t kQueryBlock = 16;
}

void attention_forward(const AttentionParams& p, ThreadPool& pool) {
  const VecOps& v = vec_ops();
  const int group = p.n_head / p.n_kv_head;
  const int64_t n_qblocks = (p.n_tok + kQueryBlock - 1) / kQueryBlock;
  pool.run(int64_t(p.n_head) * n_qblocks, [&](int64_t task) {
    const int h = int(task / n_qblocks);
    const int64_t t_begin = (task % n_qblocks) * kQueryBlock;
    const int64_t n_q = std::min(p.n_tok, t_begin + kQueryBlock) - t_begin;
    const int64_t kv_off = int64_t(h / group) * p.kv_head_stride;
    // Keys visible to the block's last query; earlier queries mask their tail.
    const int64_t n_keys = std::min(p.n_kv, p.causal_base + t_begin + n_q);
    thread_local std::vector<float> scores;
    scores.resize(size_t(n_q * n_keys));
    const float* q = p.q + t_begin * p.q_stride + int64_t(h) * p.head_dim;
    v.gemm_panel(q, p.q_stride, n_q, p.k + kv_off, p.kv_stride, n_keys, p.head_dim, scores.data(), n_keys);
    for (int64_t i = 0; i < n_q; ++i) {
      float* s = scores.data() + i * n_keys;
      const int64_t n_visible = std::min(p.n_kv, p.causal_base + t_begin + i + 1);
      float max_score = -INFINITY;
      for (int64_t j = 0; j < n_visible; ++j) {
        s[j] *= p.scale;
        max_score = std::max(max_score, s[j]);
      }
      const float inv = 1.0f / v.exp_sum(s, max_score, n_visible);
      for (int64_t j = 0; j < n_visible; ++j) s[j] *= inv;
      float* out = p.out + (t_begin + i) * p.out_stride + int64_t(h) * p.head_dim;
      v.weighted_sum(s, n_visible, p.v + kv_off, p.kv_stride, out, p.head_dim);
    }
  });
}

}  // namespace edgeinf::kernels::cpu
