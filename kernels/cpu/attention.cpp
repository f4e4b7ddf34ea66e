// Causal grouped-query softmax attention on the CPU. One task per (query head, block of queries):
// scores S = Q.K^T for the block come from the register-blocked panel product, each row is
// soft-maxed over the keys it may see, and P.V is summed with the output held in registers.
// An f16 or q8 cache is read in tiles of kKeyTile rows, each decoded into the task's scratch
// (a few KiB, in L1) just before the panel product or the weighted sum that reads it.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/common/kv_rows.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/scratch.h"
#include "kernels/cpu/vec.h"

namespace edgeinf::kernels::cpu {
namespace {
constexpr int64_t kQueryBlock = kAttentionQueryBlock;
constexpr int64_t kKeyTile = kAttentionKeyTile;

// Rows [j0, j0 + n) of one head of an encoded cache (row j at value off + j * stride), decoded
// into tile [n, head_dim].
void decode_tile(const VecOps& v, const AttentionParams& p, const void* cache, int64_t off, int64_t j0, int64_t n,
                 float* tile) {
  const char* base = static_cast<const char*>(cache);
  for (int64_t j = 0; j < n; ++j) {
    v.dequantize_row(p.kv_type, base + kv_value_offset(p.kv_type, off + (j0 + j) * p.kv_stride), tile + j * p.head_dim,
                     p.head_dim);
  }
}
}  // namespace

void attention_forward(const AttentionParams& p, ThreadPool& pool) {
  const VecOps& v = vec_ops();
  const int group = p.n_head / p.n_kv_head;
  const int64_t n_qblocks = (p.n_tok + kQueryBlock - 1) / kQueryBlock;
  const bool encoded = p.kv_type != WeightType::kF32;
  const int64_t hd = p.head_dim;
  pool.run(int64_t(p.n_head) * n_qblocks, [&](int64_t task) {
    const int h = int(task / n_qblocks);
    const int64_t t_begin = (task % n_qblocks) * kQueryBlock;
    const int64_t n_q = std::min(p.n_tok, t_begin + kQueryBlock) - t_begin;
    const int64_t kv_off = int64_t(h / group) * p.kv_head_stride;
    // Keys visible to the block's last query; earlier queries mask their tail.
    const int64_t n_keys = std::min(p.n_kv, p.causal_base + t_begin + n_q);
    // A context's step never outgrows its scratch (reserve_scratch sized it for the most keys).
    ThreadScratch& scratch = thread_scratch();
    std::vector<float>& scores = scratch.scores;
    fit(scores, n_q * n_keys);
    float* tile = nullptr;
    float* partial = nullptr;
    const float* q = p.q + t_begin * p.q_stride + int64_t(h) * hd;
    if (!encoded) {
      v.gemm_panel(q, p.q_stride, n_q, static_cast<const float*>(p.k) + kv_off, p.kv_stride, n_keys, hd, scores.data(),
                   n_keys);
    } else {
      tile = fit(scratch.tile, kKeyTile * hd);
      partial = fit(scratch.partial, hd);
      for (int64_t j0 = 0; j0 < n_keys; j0 += kKeyTile) {
        const int64_t n = std::min(kKeyTile, n_keys - j0);
        decode_tile(v, p, p.k, kv_off, j0, n, tile);
        v.gemm_panel(q, p.q_stride, n_q, tile, hd, n, hd, scores.data() + j0, n_keys);
      }
    }
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
      if (!encoded) {
        float* out = p.out + (t_begin + i) * p.out_stride + int64_t(h) * hd;
        v.weighted_sum(s, n_visible, static_cast<const float*>(p.v) + kv_off, p.kv_stride, out, hd);
      }
    }
    if (!encoded) return;
    // P.V tile by tile: each decoded value tile serves every query of the block that sees it.
    for (int64_t i = 0; i < n_q; ++i) std::fill_n(p.out + (t_begin + i) * p.out_stride + int64_t(h) * hd, hd, 0.0f);
    for (int64_t j0 = 0; j0 < n_keys; j0 += kKeyTile) {
      const int64_t n = std::min(kKeyTile, n_keys - j0);
      decode_tile(v, p, p.v, kv_off, j0, n, tile);
      for (int64_t i = 0; i < n_q; ++i) {
        const int64_t n_visible = std::min(p.n_kv, p.causal_base + t_begin + i + 1);
        const int64_t m = std::min(n, n_visible - j0);
        if (m <= 0) continue;
        v.weighted_sum(scores.data() + i * n_keys + j0, m, tile, hd, partial, hd);
        v.axpy(p.out + (t_begin + i) * p.out_stride + int64_t(h) * hd, partial, 1.0f, hd);
      }
    }
  });
}

}  // namespace edgeinf::kernels::cpu
