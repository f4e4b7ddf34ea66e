// AVX2 + FMA + F16C vector primitives. This file is compiled with -mavx2 -mfma -mf16c and is
// entered only after vec_ops() has checked the CPU supports those instructions.
#include <immintrin.h>

#include <cstring>
#include <vector>

#include "kernels/cpu/scratch.h"
#include "kernels/cpu/vec.h"
#include "kernels/reference/dequantize.h"

namespace edgeinf::kernels::cpu {
namespace {

// Weights stream from DRAM once per decoded token: fetching this far ahead overlaps the memory
// latency with the arithmetic, which the hardware prefetcher alone does not do at this density.
constexpr int kPrefetchBytes = 4096;

inline void prefetch(const void* p) { _mm_prefetch(static_cast<const char*>(p) + kPrefetchBytes, _MM_HINT_T0); }

// Hardware half-to-float conversion (F16C).
inline float half(uint16_t h) { return _cvtsh_ss(h); }

inline float hsum(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v);
  const __m128 hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
  return _mm_cvtss_f32(lo);
}

// exp(x) to about 1 ulp-level relative error (Cephes polynomial), 0 below -88.
inline __m256 exp256(__m256 x) {
  const __m256 one = _mm256_set1_ps(1.0f);
  x = _mm256_min_ps(x, _mm256_set1_ps(88.3762626647949f));
  x = _mm256_max_ps(x, _mm256_set1_ps(-88.3762626647949f));
  __m256 fx = _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f));
  fx = _mm256_floor_ps(fx);
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
  __m256 y = _mm256_set1_ps(1.9875691500E-4f);
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507E-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073E-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894E-2f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459E-1f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201E-1f));
  y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, one));
  const __m256i n = _mm256_add_epi32(_mm256_cvttps_epi32(fx), _mm256_set1_epi32(127));
  return _mm256_mul_ps(y, _mm256_castsi256_ps(_mm256_slli_epi32(n, 23)));
}

float scalar_exp(float x) {
  alignas(32) float buf[8] = {x};
  _mm256_store_ps(buf, exp256(_mm256_load_ps(buf)));
  return buf[0];
}

float dot(const float* a, const float* b, int64_t n) {
  // Two accumulators hide the FMA latency for head-sized vectors; long vectors add two more.
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t i = 0;
  if (n >= 128) {
    __m256 acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
    for (; i + 32 <= n; i += 32) {
      acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
      acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
      acc2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), acc2);
      acc3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), acc3);
    }
    acc0 = _mm256_add_ps(acc0, acc2);
    acc1 = _mm256_add_ps(acc1, acc3);
  }
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
  }
  for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
  float acc = hsum(_mm256_add_ps(acc0, acc1));
  for (; i < n; ++i) acc += a[i] * b[i];
  return acc;
}

void axpy(float* y, const float* x, float alpha, int64_t n) {
  const __m256 va = _mm256_set1_ps(alpha);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  }
  for (; i < n; ++i) y[i] += alpha * x[i];
}

float exp_sum(float* x, float shift, int64_t n) {
  const __m256 vs = _mm256_set1_ps(shift);
  __m256 acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), vs));
    _mm256_storeu_ps(x + i, e);
    acc = _mm256_add_ps(acc, e);
  }
  float sum = hsum(acc);
  for (; i < n; ++i) {
    x[i] = scalar_exp(x[i] - shift);
    sum += x[i];
  }
  return sum;
}

// 32 nibbles of a 4-bit block as floats: low nibbles are elements 0..15, high nibbles 16..31.
inline void unpack_nibbles(const uint8_t* qs, __m256 out[4]) {
  const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i mask = _mm_set1_epi8(0x0f);
  const __m128i lo = _mm_and_si128(bytes, mask);
  const __m128i hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), mask);
  out[0] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo));
  out[1] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8)));
  out[2] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi));
  out[3] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8)));
}

void dequantize_row(WeightType type, const void* src, float* dst, int64_t n) {
  switch (type) {
    case WeightType::kF32: std::memcpy(dst, src, size_t(n) * sizeof(float)); return;
    case WeightType::kF16: {
      const auto* h = static_cast<const uint16_t*>(src);
      int64_t i = 0;
      for (; i + 8 <= n; i += 8) {
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + i))));
      }
      for (; i < n; ++i) dst[i] = fp16_to_float(h[i]);
      return;
    }
    case WeightType::kBF16: {
      const auto* h = static_cast<const uint16_t*>(src);
      int64_t i = 0;
      for (; i + 8 <= n; i += 8) {
        const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + i)));
        _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(w, 16)));
      }
      for (; i < n; ++i) dst[i] = bf16_to_float(h[i]);
      return;
    }
    case WeightType::kQ4_0: {
      const auto* b = static_cast<const BlockQ4_0*>(src);
      const __m256 eight = _mm256_set1_ps(8.0f);
      for (int64_t k = 0; k < n / kQK; ++k, dst += kQK) {
        const __m256 d = _mm256_set1_ps(half(b[k].d));
        __m256 q[4];
        unpack_nibbles(b[k].qs, q);
        for (int j = 0; j < 4; ++j) _mm256_storeu_ps(dst + 8 * j, _mm256_mul_ps(_mm256_sub_ps(q[j], eight), d));
      }
      return;
    }
    case WeightType::kQ4_1: {
      const auto* b = static_cast<const BlockQ4_1*>(src);
      for (int64_t k = 0; k < n / kQK; ++k, dst += kQK) {
        const __m256 d = _mm256_set1_ps(half(b[k].d));
        const __m256 m = _mm256_set1_ps(half(b[k].m));
        __m256 q[4];
        unpack_nibbles(b[k].qs, q);
        for (int j = 0; j < 4; ++j) _mm256_storeu_ps(dst + 8 * j, _mm256_fmadd_ps(q[j], d, m));
      }
      return;
    }
    case WeightType::kQ8_0: {
      const auto* b = static_cast<const BlockQ8_0*>(src);
      for (int64_t k = 0; k < n / kQK; ++k, dst += kQK) {
        const __m256 d = _mm256_set1_ps(half(b[k].d));
        for (int j = 0; j < 4; ++j) {
          const __m128i q8 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(b[k].qs + 8 * j));
          _mm256_storeu_ps(dst + 8 * j, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q8)), d));
        }
      }
      return;
    }
    case WeightType::kQ4_K:
    case WeightType::kQ6_K: reference::dequantize_row(type, src, dst, n); return;
  }
}

// sum_i w[i] * x[i] for one encoded row; 4-bit and 8-bit blocks are decoded in registers.
float dot_row(WeightType type, const void* w, const float* x, int64_t n) {
  __m256 acc = _mm256_setzero_ps();
  switch (type) {
    case WeightType::kQ4_1: {
      // sum(d*q + m)*x = d*sum(q*x) + m*sum(x), per block.
      const auto* b = static_cast<const BlockQ4_1*>(w);
      for (int64_t k = 0; k < n / kQK; ++k, x += kQK) {
        prefetch(b + k);
        __m256 q[4];
        unpack_nibbles(b[k].qs, q);
        const __m256 x0 = _mm256_loadu_ps(x), x1 = _mm256_loadu_ps(x + 8);
        const __m256 x2 = _mm256_loadu_ps(x + 16), x3 = _mm256_loadu_ps(x + 24);
        __m256 qx = _mm256_mul_ps(q[0], x0);
        qx = _mm256_fmadd_ps(q[1], x1, qx);
        qx = _mm256_fmadd_ps(q[2], x2, qx);
        qx = _mm256_fmadd_ps(q[3], x3, qx);
        const __m256 xs = _mm256_add_ps(_mm256_add_ps(x0, x1), _mm256_add_ps(x2, x3));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(half(b[k].d)), qx, acc);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(half(b[k].m)), xs, acc);
      }
      return hsum(acc);
    }
    case WeightType::kQ4_0: {
      const auto* b = static_cast<const BlockQ4_0*>(w);
      const __m256 eight = _mm256_set1_ps(8.0f);
      for (int64_t k = 0; k < n / kQK; ++k, x += kQK) {
        prefetch(b + k);
        __m256 q[4];
        unpack_nibbles(b[k].qs, q);
        __m256 qx = _mm256_mul_ps(_mm256_sub_ps(q[0], eight), _mm256_loadu_ps(x));
        qx = _mm256_fmadd_ps(_mm256_sub_ps(q[1], eight), _mm256_loadu_ps(x + 8), qx);
        qx = _mm256_fmadd_ps(_mm256_sub_ps(q[2], eight), _mm256_loadu_ps(x + 16), qx);
        qx = _mm256_fmadd_ps(_mm256_sub_ps(q[3], eight), _mm256_loadu_ps(x + 24), qx);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(half(b[k].d)), qx, acc);
      }
      return hsum(acc);
    }
    case WeightType::kQ8_0: {
      const auto* b = static_cast<const BlockQ8_0*>(w);
      for (int64_t k = 0; k < n / kQK; ++k, x += kQK) {
        prefetch(b + k);
        __m256 qx = _mm256_setzero_ps();
        for (int j = 0; j < 4; ++j) {
          const __m128i q8 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(b[k].qs + 8 * j));
          qx = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q8)), _mm256_loadu_ps(x + 8 * j), qx);
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(half(b[k].d)), qx, acc);
      }
      return hsum(acc);
    }
    case WeightType::kF32: return dot(static_cast<const float*>(w), x, n);
    default: {
      float* row = fit(thread_scratch().row, n);
      dequantize_row(type, w, row, n);
      return dot(row, x, n);
    }
  }
}

// Two tokens against four weight rows: eight accumulators stay in registers.
inline void kernel_2x4(const float* x0, const float* x1, const float* w, int64_t w_stride, int64_t n_in, int64_t n_vec,
                       float* y0, float* y1) {
  const float* w0 = w;
  const float* w1 = w + w_stride;
  const float* w2 = w + 2 * w_stride;
  const float* w3 = w + 3 * w_stride;
  __m256 a00 = _mm256_setzero_ps(), a01 = _mm256_setzero_ps(), a02 = _mm256_setzero_ps(), a03 = _mm256_setzero_ps();
  __m256 a10 = _mm256_setzero_ps(), a11 = _mm256_setzero_ps(), a12 = _mm256_setzero_ps(), a13 = _mm256_setzero_ps();
  for (int64_t i = 0; i < n_vec; i += 8) {
    const __m256 vx0 = _mm256_loadu_ps(x0 + i);
    const __m256 vx1 = _mm256_loadu_ps(x1 + i);
    __m256 vw = _mm256_loadu_ps(w0 + i);
    a00 = _mm256_fmadd_ps(vx0, vw, a00);
    a10 = _mm256_fmadd_ps(vx1, vw, a10);
    vw = _mm256_loadu_ps(w1 + i);
    a01 = _mm256_fmadd_ps(vx0, vw, a01);
    a11 = _mm256_fmadd_ps(vx1, vw, a11);
    vw = _mm256_loadu_ps(w2 + i);
    a02 = _mm256_fmadd_ps(vx0, vw, a02);
    a12 = _mm256_fmadd_ps(vx1, vw, a12);
    vw = _mm256_loadu_ps(w3 + i);
    a03 = _mm256_fmadd_ps(vx0, vw, a03);
    a13 = _mm256_fmadd_ps(vx1, vw, a13);
  }
  float r0[4] = {hsum(a00), hsum(a01), hsum(a02), hsum(a03)};
  float r1[4] = {hsum(a10), hsum(a11), hsum(a12), hsum(a13)};
  for (int64_t i = n_vec; i < n_in; ++i) {
    for (int r = 0; r < 4; ++r) {
      r0[r] += x0[i] * w[r * w_stride + i];
      r1[r] += x1[i] * w[r * w_stride + i];
    }
  }
  for (int r = 0; r < 4; ++r) {
    y0[r] = r0[r];
    if (y1 != nullptr) y1[r] = r1[r];
  }
}

void gemm_panel(const float* x, int64_t x_stride, int64_t n_tok, const float* w, int64_t w_stride, int64_t n_rows,
                int64_t n_in, float* y, int64_t y_stride) {
  const int64_t n_vec = n_in / 8 * 8;
  int64_t r = 0;
  for (; r + 4 <= n_rows; r += 4) {
    int64_t t = 0;
    for (; t + 2 <= n_tok; t += 2) {
      kernel_2x4(x + t * x_stride, x + (t + 1) * x_stride, w + r * w_stride, w_stride, n_in, n_vec,
                 y + t * y_stride + r, y + (t + 1) * y_stride + r);
    }
    if (t < n_tok) {
      kernel_2x4(x + t * x_stride, x + t * x_stride, w + r * w_stride, w_stride, n_in, n_vec, y + t * y_stride + r,
                 nullptr);
    }
  }
  for (; r < n_rows; ++r) {
    for (int64_t t = 0; t < n_tok; ++t) y[t * y_stride + r] = dot(x + t * x_stride, w + r * w_stride, n_in);
  }
}

// 32 output columns at a time stay in four registers while the value rows stream past.
void weighted_sum(const float* p, int64_t n_rows, const float* v, int64_t v_stride, float* out, int64_t n) {
  int64_t d = 0;
  for (; d + 32 <= n; d += 32) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    const float* vd = v + d;
    for (int64_t j = 0; j < n_rows; ++j, vd += v_stride) {
      const __m256 pj = _mm256_set1_ps(p[j]);
      a0 = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vd), a0);
      a1 = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vd + 8), a1);
      a2 = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vd + 16), a2);
      a3 = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vd + 24), a3);
    }
    _mm256_storeu_ps(out + d, a0);
    _mm256_storeu_ps(out + d + 8, a1);
    _mm256_storeu_ps(out + d + 16, a2);
    _mm256_storeu_ps(out + d + 24, a3);
  }
  for (; d + 8 <= n; d += 8) {
    __m256 a = _mm256_setzero_ps();
    for (int64_t j = 0; j < n_rows; ++j)
      a = _mm256_fmadd_ps(_mm256_set1_ps(p[j]), _mm256_loadu_ps(v + j * v_stride + d), a);
    _mm256_storeu_ps(out + d, a);
  }
  for (; d < n; ++d) {
    float a = 0.0f;
    for (int64_t j = 0; j < n_rows; ++j) a += p[j] * v[j * v_stride + d];
    out[d] = a;
  }
}

void swiglu(const float* gate, const float* up, float* out, int64_t n) {
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 zero = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 g = _mm256_loadu_ps(gate + i);
    const __m256 e = exp256(_mm256_sub_ps(zero, g));
    const __m256 silu = _mm256_div_ps(g, _mm256_add_ps(one, e));
    _mm256_storeu_ps(out + i, _mm256_mul_ps(silu, _mm256_loadu_ps(up + i)));
  }
  for (; i < n; ++i) out[i] = gate[i] / (1.0f + scalar_exp(-gate[i])) * up[i];
}

}  // namespace

const VecOps& vec_ops_avx2() {
  static const VecOps ops{"avx2", dot, axpy, exp_sum, dequantize_row, dot_row, gemm_panel, weighted_sum, swiglu};
  return ops;
}

}  // namespace edgeinf::kernels::cpu
