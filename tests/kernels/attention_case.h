// An attention problem for the kernel tests: its shape and cache layout, random queries, keys and
// values with the cache encoded in a KV type by the reference's quantisers, and the params over
// them (host or device pointers).
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/common/op_params.h"
#include "kernels/reference/dequantize.h"
#include "tests/tolerances.h"

namespace edgeinf::testing {

struct AttentionCase {
  int64_t n_tok, n_kv;
  int n_head, n_kv_head, head_dim;
  bool head_major = false;  // cache [n_kv_head, n_kv, head_dim], else [n_kv, n_kv_head, head_dim]
  int64_t q_stride() const { return int64_t(n_head) * head_dim; }
};

struct AttentionInputs {
  std::vector<float> q;
  std::vector<uint8_t> k, v;  // rows of head_dim values in the cache's order and type
};

inline AttentionInputs attention_inputs(const AttentionCase& c, kernels::WeightType type, uint32_t seed) {
  const int64_t kv_dim = int64_t(c.n_kv_head) * c.head_dim;
  const std::vector<float> kf = random_floats(size_t(c.n_kv * kv_dim), seed + 1);
  const std::vector<float> vf = random_floats(size_t(c.n_kv * kv_dim), seed + 2);
  AttentionInputs in;
  in.q = random_floats(size_t(c.n_tok * c.q_stride()), seed);
  const size_t rb = kernels::row_bytes(type, c.head_dim);
  in.k.resize(size_t(c.n_kv * c.n_kv_head) * rb);
  in.v.resize(in.k.size());
  for (int64_t t = 0; t < c.n_kv; ++t) {
    for (int g = 0; g < c.n_kv_head; ++g) {
      const size_t row = c.head_major ? size_t(g * c.n_kv + t) : size_t(t * c.n_kv_head + g);
      kernels::reference::quantize_row(type, kf.data() + t * kv_dim + g * c.head_dim, in.k.data() + row * rb,
                                       c.head_dim);
      kernels::reference::quantize_row(type, vf.data() + t * kv_dim + g * c.head_dim, in.v.data() + row * rb,
                                       c.head_dim);
    }
  }
  return in;
}

// Every query sees the keys before it (causal_base = n_kv - n_tok), scale 1 / sqrt(head_dim).
inline kernels::AttentionParams attention_params(const AttentionCase& c, kernels::WeightType type, const float* q,
                                                 const void* k, const void* v, float* out) {
  kernels::AttentionParams p;
  p.q = q;
  p.q_stride = c.q_stride();
  p.k = k;
  p.v = v;
  p.kv_type = type;
  p.kv_stride = c.head_major ? c.head_dim : int64_t(c.n_kv_head) * c.head_dim;
  p.kv_head_stride = c.head_major ? c.n_kv * c.head_dim : c.head_dim;
  p.out = out;
  p.out_stride = c.q_stride();
  p.n_tok = c.n_tok;
  p.n_kv = c.n_kv;
  p.causal_base = c.n_kv - c.n_tok;
  p.n_head = c.n_head;
  p.n_kv_head = c.n_kv_head;
  p.head_dim = c.head_dim;
  p.scale = 1.0f / std::sqrt(float(c.head_dim));
  return p;
}

}  // namespace edgeinf::testing
