// Causal grouped-query softmax attention on the CPU.
//
// An f32 cache: one task per (query head, block of queries): scores S = Q.K^T for the block come
// from the register-blocked panel product, each row is soft-maxed over the keys it may see, and
// P.V is summed with the output held in registers.
//
// An f16 or q8 cache is read in tiles of kKeyTile rows, each decoded into the task's scratch (a
// few KiB, in L1) just before the panel products or the weighted sums that read it. One task per
// (KV head, block of queries) serves every query head of the group, so each tile is decoded once
// for the group. A single block of queries (decode) also splits its keys into chunks of about
// kDecodeChunk, one task each, whose soft-maxed partial sums are merged by their maxima and
// normalisers afterwards (flash-decoding): every thread then has work, and since the chunks
// follow the shape alone, the result does not depend on the number of threads.
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
constexpr int64_t kDecodeChunk = kAttentionDecodeChunk;
constexpr int64_t kEncodedRows = kAttentionEncodedRows;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

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

void attention_f32(const AttentionParams& p, ThreadPool& pool) {
  const VecOps& v = vec_ops();
  const int group = p.n_head / p.n_kv_head;
  const int64_t n_qblocks = ceil_div(p.n_tok, kQueryBlock);
  const int64_t hd = p.head_dim;
  const auto* k = static_cast<const float*>(p.k);
  const auto* val = static_cast<const float*>(p.v);
  pool.run(int64_t(p.n_head) * n_qblocks, [&](int64_t task) {
    const int h = int(task / n_qblocks);
    const int64_t t_begin = (task % n_qblocks) * kQueryBlock;
    const int64_t n_q = std::min(p.n_tok, t_begin + kQueryBlock) - t_begin;
    const int64_t kv_off = int64_t(h / group) * p.kv_head_stride;
    // Keys visible to the block's last query; earlier queries mask their tail.
    const int64_t n_keys = std::min(p.n_kv, p.causal_base + t_begin + n_q);
    // A context's step never outgrows its scratch (reserve_scratch sized it for the most keys).
    float* scores = fit(thread_scratch().scores, n_q * n_keys);
    const float* q = p.q + t_begin * p.q_stride + int64_t(h) * hd;
    v.gemm_panel(q, p.q_stride, n_q, k + kv_off, p.kv_stride, n_keys, hd, scores, n_keys);
    for (int64_t i = 0; i < n_q; ++i) {
      float* s = scores + i * n_keys;
      const int64_t n_visible = std::min(p.n_kv, p.causal_base + t_begin + i + 1);
      float max_score = -INFINITY;
      for (int64_t j = 0; j < n_visible; ++j) {
        s[j] *= p.scale;
        max_score = std::max(max_score, s[j]);
      }
      const float inv = 1.0f / v.exp_sum(s, max_score, n_visible);
      for (int64_t j = 0; j < n_visible; ++j) s[j] *= inv;
      v.weighted_sum(s, n_visible, val + kv_off, p.kv_stride, p.out + (t_begin + i) * p.out_stride + int64_t(h) * hd,
                     hd);
    }
  });
}

void attention_encoded(const AttentionParams& p, ThreadPool& pool) {
  const VecOps& v = vec_ops();
  const int group = p.n_head / p.n_kv_head;
  const int64_t hd = p.head_dim;
  // Rows of a task: every head of the group for each query of the block, an even number of
  // queries (the panel product takes them in pairs) up to kEncodedRows rows.
  const int64_t q_block = kEncodedRows / group >= 2 ? kEncodedRows / group / 2 * 2 : 1;
  const int64_t n_qblocks = ceil_div(p.n_tok, q_block);
  const int64_t all_keys = std::min(p.n_kv, p.causal_base + p.n_tok);
  const int64_t n_chunks = n_qblocks == 1 ? std::max<int64_t>(1, ceil_div(all_keys, kDecodeChunk)) : 1;
  const int64_t chunk = ceil_div(all_keys, n_chunks);
  // Per (head, query, chunk): the chunk's maximum score, its normaliser and its output.
  const int64_t slot = hd + 2;
  float* merge = n_chunks > 1 ? fit(thread_scratch().merge, int64_t(p.n_head) * p.n_tok * n_chunks * slot) : nullptr;
  pool.run(int64_t(p.n_kv_head) * n_qblocks * n_chunks, [&](int64_t task) {
    const int g = int(task / (n_qblocks * n_chunks));
    const int64_t t_begin = task / n_chunks % n_qblocks * q_block;
    const int64_t c = task % n_chunks;
    const int64_t n_q = std::min(p.n_tok, t_begin + q_block) - t_begin;
    const int64_t rows = group * n_q;  // row r: head g * group + r / n_q, query t_begin + r % n_q
    const int64_t kv_off = int64_t(g) * p.kv_head_stride;
    // This task's keys: its chunk of those visible to the block's last query.
    const int64_t k0 = c * chunk;
    const int64_t k1 = std::min(std::min(p.n_kv, p.causal_base + t_begin + n_q), k0 + chunk);
    const int64_t len = std::max<int64_t>(0, k1 - k0);
    ThreadScratch& scratch = thread_scratch();
    float* scores = fit(scratch.scores, rows * len);
    float* tile = fit(scratch.tile, kKeyTile * hd);
    float* partial = fit(scratch.partial, hd);
    auto head = [&](int64_t r) { return int64_t(g) * group + r / n_q; };
    auto token = [&](int64_t r) { return t_begin + r % n_q; };
    // Keys of [k0, k1) row r may see.
    auto visible = [&](int64_t r) {
      return std::max<int64_t>(0, std::min(k1, std::min(p.n_kv, p.causal_base + token(r) + 1)) - k0);
    };
    auto out = [&](int64_t r) {
      return merge != nullptr ? merge + ((head(r) * p.n_tok + token(r)) * n_chunks + c) * slot + 2
                              : p.out + token(r) * p.out_stride + head(r) * hd;
    };
    for (int64_t j0 = k0; j0 < k1; j0 += kKeyTile) {
      const int64_t n = std::min(kKeyTile, k1 - j0);
      decode_tile(v, p, p.k, kv_off, j0, n, tile);
      const float* q = p.q + t_begin * p.q_stride + int64_t(g) * group * hd;
      if (n_q == 1) {  // the group's query heads are adjacent rows of one token
        v.gemm_panel(q, hd, group, tile, hd, n, hd, scores + (j0 - k0), len);
        continue;
      }
      for (int gi = 0; gi < group; ++gi) {
        v.gemm_panel(q + gi * hd, p.q_stride, n_q, tile, hd, n, hd, scores + gi * n_q * len + (j0 - k0), len);
      }
    }
    for (int64_t r = 0; r < rows; ++r) {
      float* s = scores + r * len;
      const int64_t n_visible = visible(r);
      float max_score = -INFINITY, sum = 0.0f;
      if (n_visible > 0) {
        for (int64_t j = 0; j < n_visible; ++j) {
          s[j] *= p.scale;
          max_score = std::max(max_score, s[j]);
        }
        sum = v.exp_sum(s, max_score, n_visible);
        const float inv = 1.0f / sum;
        for (int64_t j = 0; j < n_visible; ++j) s[j] *= inv;
      }
      std::fill_n(out(r), hd, 0.0f);
      if (merge != nullptr) {
        out(r)[-2] = max_score;
        out(r)[-1] = sum;
      }
    }
    // P.V tile by tile: each decoded value tile serves every row that sees it.
    for (int64_t j0 = k0; j0 < k1; j0 += kKeyTile) {
      const int64_t n = std::min(kKeyTile, k1 - j0);
      decode_tile(v, p, p.v, kv_off, j0, n, tile);
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t m = std::min(n, visible(r) - (j0 - k0));
        if (m <= 0) continue;
        v.weighted_sum(scores + r * len + (j0 - k0), m, tile, hd, partial, hd);
        v.axpy(out(r), partial, 1.0f, hd);
      }
    }
  });
  if (merge == nullptr) return;
  // out = sum_c w_c o_c with w_c = sum_c e^(max_c - max) / sum_c' sum_c' e^(max_c' - max).
  for (int64_t h = 0; h < p.n_head; ++h) {
    for (int64_t t = 0; t < p.n_tok; ++t) {
      const float* part = merge + (h * p.n_tok + t) * n_chunks * slot;
      float max_score = -INFINITY;
      for (int64_t c = 0; c < n_chunks; ++c) max_score = std::max(max_score, part[c * slot]);
      float total = 0.0f;
      for (int64_t c = 0; c < n_chunks; ++c) {
        if (part[c * slot + 1] > 0.0f) total += part[c * slot + 1] * std::exp(part[c * slot] - max_score);
      }
      float* o = p.out + t * p.out_stride + h * hd;
      std::fill_n(o, hd, 0.0f);
      for (int64_t c = 0; c < n_chunks; ++c) {
        if (part[c * slot + 1] <= 0.0f) continue;
        v.axpy(o, part + c * slot + 2, part[c * slot + 1] * std::exp(part[c * slot] - max_score) / total, hd);
      }
    }
  }
}
}  // namespace

void attention_forward(const AttentionParams& p, ThreadPool& pool) {
  if (p.kv_type == WeightType::kF32) {
    attention_f32(p, pool);
  } else {
    attention_encoded(p, pool);
  }
}

}  // namespace edgeinf::kernels::cpu
