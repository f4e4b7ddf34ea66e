// Compressed-memory ops on the CPU: the d x d products run through the vector primitives
// (a row vector times M is a weighted sum of M's rows); one task per KV head or per token.
#include <vector>

#include "kernels/common/linear_memory.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/scratch.h"
#include "kernels/cpu/vec.h"

namespace edgeinf::kernels::cpu {
namespace {

void elu1_row(const float* x, float* out, int n) {
  for (int i = 0; i < n; ++i) out[i] = elu1(x[i]);
}

}  // namespace

void memory_compress(const MemoryCompressParams& p, ThreadPool& pool) {
  const VecOps& v = vec_ops();
  const int d = p.head_dim;
  pool.run(p.n_kv_head, [&](int64_t g) {
    float* m = p.m + size_t(g) * size_t(d) * size_t(d);
    float* z = p.z + size_t(g) * size_t(d);
    ThreadScratch& scratch = thread_scratch();
    float* sk = fit(scratch.fold_keys, p.n_tok * d);
    float* diff = fit(scratch.fold_diff, d);
    float* retrieved = fit(scratch.fold_read, p.n_tok * d);
    std::fill_n(retrieved, p.n_tok * d, 0.0f);
    for (int64_t t = 0; t < p.n_tok; ++t) elu1_row(p.k + t * p.kv_stride + g * d, sk + t * d, d);
    if (p.delta) {  // retrieval against the memory before this segment's update
      for (int64_t t = 0; t < p.n_tok; ++t) {
        const float* s = sk + t * d;
        float* r = retrieved + t * d;
        const float den = v.dot(s, z, d);
        v.weighted_sum(s, d, m, d, r, d);
        for (int j = 0; j < d; ++j) r[j] = memory_read(r[j], den);
      }
    }
    for (int64_t t = 0; t < p.n_tok; ++t) {
      const float* s = sk + t * d;
      const float* val = p.v + t * p.kv_stride + g * d;
      const float* r = retrieved + t * d;
      for (int j = 0; j < d; ++j) diff[j] = val[j] - r[j];
      for (int i = 0; i < d; ++i) v.axpy(m + size_t(i) * size_t(d), diff, s[i], d);
      for (int i = 0; i < d; ++i) z[i] += s[i];
    }
  });
}

void memory_decompress(const MemoryDecompressParams& p, ThreadPool& pool) {
  const VecOps& v = vec_ops();
  const int d = p.head_dim;
  const int group = p.n_head / p.n_kv_head;
  pool.run(p.n_tok, [&](int64_t t) {
    float* sq = fit(thread_scratch().read_query, d);
    for (int h = 0; h < p.n_head; ++h) {
      const float* m = p.m + size_t(h / group) * size_t(d) * size_t(d);
      const float* z = p.z + size_t(h / group) * size_t(d);
      elu1_row(p.q + t * p.q_stride + int64_t(h) * d, sq, d);
      float* out = p.a_mem + t * p.q_stride + int64_t(h) * d;
      const float den = v.dot(sq, z, d);
      v.weighted_sum(sq, d, m, d, out, d);
      for (int j = 0; j < d; ++j) out[j] = memory_read(out[j], den);
    }
  });
}

void gate_blend_forward(const GateBlendParams& p, ThreadPool& pool) {
  pool.run(p.n_tok, [&](int64_t t) {
    for (int h = 0; h < p.n_head; ++h) {
      const float g = p.gate[t * p.n_head + h];
      const int64_t off = t * p.stride + int64_t(h) * p.head_dim;
      for (int j = 0; j < p.head_dim; ++j) p.out[off + j] = gate_blend(g, p.a_mem[off + j], p.a_local[off + j]);
    }
  });
}

void head_projection_forward(const HeadProjectionParams& p, ThreadPool& pool) {
  const int d = p.head_dim;
  pool.run(p.n_tok, [&](int64_t t) {
    for (int h = 0; h < p.n_head; ++h) {
      const float* x = p.x + t * p.x_stride + int64_t(h) * d;
      for (int i = 0; i < d; ++i) {
        p.y[t * p.y_stride + int64_t(h) * d + i] = head_project(p.w + (int64_t(h) * d + i) * d, x, d);
      }
    }
  });
}

}  // namespace edgeinf::kernels::cpu
