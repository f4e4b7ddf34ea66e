// Scalar compressed-memory ops: plain loops over heads, tokens and the d x d memory.
#include "kernels/reference/memory.h"

#include <vector>

#include "kernels/common/linear_memory.h"

namespace edgeinf::kernels::reference {

void memory_compress(const MemoryCompressParams& p) {
  const int d = p.head_dim;
  std::vector<float> sk(static_cast<size_t>(d)), retrieved(static_cast<size_t>(p.n_tok) * size_t(d), 0.0f);
  for (int g = 0; g < p.n_kv_head; ++g) {
    float* m = p.m + size_t(g) * size_t(d) * size_t(d);
    float* z = p.z + size_t(g) * size_t(d);
    // The delta rule retrieves with the memory as it was before this segment.
    if (p.delta) {
      for (int64_t t = 0; t < p.n_tok; ++t) {
        const float* k = p.k + t * p.kv_stride + int64_t(g) * d;
        float den = 0.0f;
        for (int i = 0; i < d; ++i) den += elu1(k[i]) * z[i];
        for (int j = 0; j < d; ++j) {
          float num = 0.0f;
          for (int i = 0; i < d; ++i) num += elu1(k[i]) * m[size_t(i) * size_t(d) + size_t(j)];
          retrieved[size_t(t) * size_t(d) + size_t(j)] = memory_read(num, den);
        }
      }
    }
    for (int64_t t = 0; t < p.n_tok; ++t) {
      const float* k = p.k + t * p.kv_stride + int64_t(g) * d;
      const float* v = p.v + t * p.kv_stride + int64_t(g) * d;
      for (int i = 0; i < d; ++i) sk[size_t(i)] = elu1(k[i]);
      for (int i = 0; i < d; ++i) {
        for (int j = 0; j < d; ++j) {
          float& mij = m[size_t(i) * size_t(d) + size_t(j)];
          mij = memory_write(mij, sk[size_t(i)], v[j], retrieved[size_t(t) * size_t(d) + size_t(j)]);
        }
      }
      for (int i = 0; i < d; ++i) z[i] += sk[size_t(i)];
    }
  }
}

void memory_decompress(const MemoryDecompressParams& p) {
  const int d = p.head_dim;
  const int group = p.n_head / p.n_kv_head;
  for (int64_t t = 0; t < p.n_tok; ++t) {
    for (int h = 0; h < p.n_head; ++h) {
      const float* m = p.m + size_t(h / group) * size_t(d) * size_t(d);
      const float* z = p.z + size_t(h / group) * size_t(d);
      const float* q = p.q + t * p.q_stride + int64_t(h) * d;
      float* out = p.a_mem + t * p.q_stride + int64_t(h) * d;
      float den = 0.0f;
      for (int i = 0; i < d; ++i) den += elu1(q[i]) * z[i];
      for (int j = 0; j < d; ++j) {
        float num = 0.0f;
        for (int i = 0; i < d; ++i) num += elu1(q[i]) * m[size_t(i) * size_t(d) + size_t(j)];
        out[j] = memory_read(num, den);
      }
    }
  }
}

void gate_blend_forward(const GateBlendParams& p) {
  for (int64_t t = 0; t < p.n_tok; ++t) {
    for (int h = 0; h < p.n_head; ++h) {
      const float g = p.gate[t * p.n_head + h];
      const int64_t off = t * p.stride + int64_t(h) * p.head_dim;
      for (int j = 0; j < p.head_dim; ++j) p.out[off + j] = gate_blend(g, p.a_mem[off + j], p.a_local[off + j]);
    }
  }
}

void gate_linear_forward(const GateLinearParams& p) {
  const int64_t q_dim = int64_t(p.n_head) * p.head_dim;
  for (int64_t t = 0; t < p.n_tok; ++t) {
    for (int h = 0; h < p.n_head; ++h) {
      const float* w = p.w + int64_t(h) * 2 * q_dim;
      float s = p.bias[h];
      for (int64_t i = 0; i < q_dim; ++i) s += w[i] * p.a_mem[t * p.stride + i];
      for (int64_t i = 0; i < q_dim; ++i) s += w[q_dim + i] * p.a_local[t * p.stride + i];
      p.gate[t * p.n_head + h] = sigmoid(s);
    }
  }
}

void head_projection_forward(const HeadProjectionParams& p) {
  const int d = p.head_dim;
  for (int64_t t = 0; t < p.n_tok; ++t) {
    for (int h = 0; h < p.n_head; ++h) {
      const float* x = p.x + t * p.x_stride + int64_t(h) * d;
      for (int i = 0; i < d; ++i) {
        p.y[t * p.y_stride + int64_t(h) * d + i] = head_project(p.w + (int64_t(h) * d + i) * d, x, d);
      }
    }
  }
}

}  // namespace edgeinf::kernels::reference
