// Portable vector primitives: the fallback on CPUs without AVX2, and the baseline in tests.
#include <cmath>

#include "kernels/cpu/vec.h"
#include "kernels/reference/dequantize.h"

namespace edgeinf::kernels::cpu {
namespace {

float dot(const float* a, const float* b, int64_t n) {
  float acc = 0.0f;
  for (int64_t i = 0; i < n; ++i) acc += a[i] * b[i];
  return acc;
}

void axpy(float* y, const float* x, float alpha, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

float exp_sum(float* x, float shift, int64_t n) {
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - shift);
    sum += x[i];
  }
  return sum;
}

void gemm_panel(const float* x, int64_t x_stride, int64_t n_tok, const float* w, int64_t w_stride, int64_t n_rows,
                int64_t n_in, float* y, int64_t y_stride) {
  for (int64_t t = 0; t < n_tok; ++t) {
    for (int64_t r = 0; r < n_rows; ++r) y[t * y_stride + r] = dot(x + t * x_stride, w + r * w_stride, n_in);
  }
}

void weighted_sum(const float* p, int64_t n_rows, const float* v, int64_t v_stride, float* out, int64_t n) {
  for (int64_t d = 0; d < n; ++d) out[d] = 0.0f;
  for (int64_t j = 0; j < n_rows; ++j) axpy(out, v + j * v_stride, p[j], n);
}

void swiglu(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

}  // namespace

const VecOps& vec_ops_generic() {
  static const VecOps ops{"generic",          dot,        axpy,         exp_sum, reference::dequantize_row,
                          reference::dot_row, gemm_panel, weighted_sum, swiglu};
  return ops;
}

}  // namespace edgeinf::kernels::cpu
