// Causal grouped-query softmax attention on the CPU: one task per (query head, token block).
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
    const int64_t t_end = std::min(p.n_tok, t_begin + kQueryBlock);
    const int64_t kv_off = int64_t(h / group) * p.head_dim;
    thread_local std::vector<float> scores;
    scores.resize(size_t(p.n_kv));
    for (int64_t t = t_begin; t < t_end; ++t) {
      const float* q = p.q + t * p.q_stride + int64_t(h) * p.head_dim;
      const int64_t n_visible = std::min(p.n_kv, p.causal_base + t + 1);
      float max_score = -INFINITY;
      for (int64_t j = 0; j < n_visible; ++j) {
        const float s = v.dot(q, p.k + j * p.kv_stride + kv_off, p.head_dim) * p.scale;
        scores[size_t(j)] = s;
        max_score = std::max(max_score, s);
      }
      const float sum = v.exp_sum(scores.data(), max_score, n_visible);
      float* out = p.out + t * p.out_stride + int64_t(h) * p.head_dim;
      std::fill(out, out + p.head_dim, 0.0f);
      const float inv = 1.0f / sum;
      for (int64_t j = 0; j < n_visible; ++j) {
        v.axpy(out, p.v + j * p.kv_stride + kv_off, scores[size_t(j)] * inv, p.head_dim);
      }
    }
  });
}

}  // namespace edgeinf::kernels::cpu
