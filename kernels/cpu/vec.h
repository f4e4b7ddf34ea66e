// Vector primitives of the CPU backend, chosen once at start-up for the host's instruction set.
#pragma once

#include <cstdint>

#include "kernels/common/quant_blocks.h"

namespace edgeinf::kernels::cpu {

struct VecOps {
  const char* isa;
  // sum_i a[i] * b[i]
  float (*dot)(const float* a, const float* b, int64_t n);
  // y[i] += alpha * x[i]
  void (*axpy)(float* y, const float* x, float alpha, int64_t n);
  // x[i] = exp(x[i] - shift); returns the sum of the results.
  float (*exp_sum)(float* x, float shift, int64_t n);
  // Decodes n elements of one weight row (n a multiple of the block size).
  void (*dequantize_row)(WeightType type, const void* src, float* dst, int64_t n);
  // Dot product of one encoded weight row with n float activations, decoding in registers.
  float (*dot_row)(WeightType type, const void* w, const float* x, int64_t n);
  // y[t * y_stride + r] = dot(x[t], w[r]) for t < n_tok, r < n_rows; row r of w starts at w + r * w_stride.
  void (*gemm_panel)(const float* x, int64_t x_stride, int64_t n_tok, const float* w, int64_t w_stride, int64_t n_rows,
                     int64_t n_in, float* y, int64_t y_stride);
  // out[d] = sum_j p[j] * v[j * v_stride + d] for d < n (attention's weighted sum of value rows).
  void (*weighted_sum)(const float* p, int64_t n_rows, const float* v, int64_t v_stride, float* out, int64_t n);
  // out[i] = silu(gate[i]) * up[i]
  void (*swiglu)(const float* gate, const float* up, float* out, int64_t n);
};

// The best implementation this CPU supports (AVX2+FMA+F16C, else portable scalar code); the
// environment variable EDGEINF_CPU=generic selects the portable one.
const VecOps& vec_ops();
// The portable implementation, for tests that compare the two.
const VecOps& vec_ops_generic();

}  // namespace edgeinf::kernels::cpu
