// Scalar block decoders for every supported weight type, written for clarity, never optimised.
#include "kernels/reference/dequantize.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace edgeinf::kernels::reference {
namespace {

void dequant_q4_0(const BlockQ4_0* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = fp16_to_float(b[i].d);
    for (int j = 0; j < kQK / 2; ++j) {
      y[j] = float((b[i].qs[j] & 0x0f) - 8) * d;
      y[j + kQK / 2] = float((b[i].qs[j] >> 4) - 8) * d;
    }
  }
}

void dequant_q4_1(const BlockQ4_1* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = fp16_to_float(b[i].d);
    const float m = fp16_to_float(b[i].m);
    for (int j = 0; j < kQK / 2; ++j) {
      y[j] = float(b[i].qs[j] & 0x0f) * d + m;
      y[j + kQK / 2] = float(b[i].qs[j] >> 4) * d + m;
    }
  }
}

void dequant_q8_0(const BlockQ8_0* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = fp16_to_float(b[i].d);
    for (int j = 0; j < kQK; ++j) y[j] = float(b[i].qs[j]) * d;
  }
}

void dequant_q4_k(const BlockQ4_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_float(b[i].d);
    const float dmin = fp16_to_float(b[i].dmin);
    const uint8_t* q = b[i].qs;
    // Each 64 elements use two sub-block scales: low nibbles of 32 bytes, then high nibbles.
    for (int j = 0; j < kQK_K / 64; ++j, q += 32) {
      uint8_t sc = 0, m = 0;
      q4k_scale_min(2 * j, b[i].scales, &sc, &m);
      const float d1 = d * sc, m1 = dmin * m;
      q4k_scale_min(2 * j + 1, b[i].scales, &sc, &m);
      const float d2 = d * sc, m2 = dmin * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * float(q[l] & 0x0f) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * float(q[l] >> 4) - m2;
    }
  }
}

void dequant_q6_k(const BlockQ6_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_float(b[i].d);
    const uint8_t* ql = b[i].ql;
    const uint8_t* qh = b[i].qh;
    const int8_t* sc = b[i].scales;
    // Each 128 elements: 64 bytes of low nibbles, 32 bytes of 2-bit highs, 8 scales.
    for (int n = 0; n < kQK_K; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = int((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = int((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = int((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = int((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l + 0] = d * float(sc[is + 0]) * float(q1);
        y[l + 32] = d * float(sc[is + 2]) * float(q2);
        y[l + 64] = d * float(sc[is + 4]) * float(q3);
        y[l + 96] = d * float(sc[is + 6]) * float(q4);
      }
    }
  }
}

// Symmetric or asymmetric n-bit code for a block: returns scale (and min) so x ~ d*q + m.
void minmax(const float* x, int n, float* lo, float* hi) {
  *lo = *hi = x[0];
  for (int j = 1; j < n; ++j) {
    *lo = std::min(*lo, x[j]);
    *hi = std::max(*hi, x[j]);
  }
}

int clampi(int v, int lo, int hi) { return std::max(lo, std::min(hi, v)); }

void quant_q4_0(const float* x, BlockQ4_0* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    float amax = 0, maxv = 0;
    for (int j = 0; j < kQK; ++j) {
      if (std::fabs(x[j]) > amax) {
        amax = std::fabs(x[j]);
        maxv = x[j];
      }
    }
    const float d = maxv / -8.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    b[i].d = float_to_fp16(d);
    for (int j = 0; j < kQK / 2; ++j) {
      const int q0 = clampi(int(std::lround(x[j] * id + 8.0f)), 0, 15);
      const int q1 = clampi(int(std::lround(x[j + kQK / 2] * id + 8.0f)), 0, 15);
      b[i].qs[j] = uint8_t(q0 | (q1 << 4));
    }
  }
}

void quant_q4_1(const float* x, BlockQ4_1* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    float lo, hi;
    minmax(x, kQK, &lo, &hi);
    const float d = (hi - lo) / 15.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    b[i].d = float_to_fp16(d);
    b[i].m = float_to_fp16(lo);
    for (int j = 0; j < kQK / 2; ++j) {
      const int q0 = clampi(int(std::lround((x[j] - lo) * id)), 0, 15);
      const int q1 = clampi(int(std::lround((x[j + kQK / 2] - lo) * id)), 0, 15);
      b[i].qs[j] = uint8_t(q0 | (q1 << 4));
    }
  }
}

void quant_q8_0(const float* x, BlockQ8_0* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    float amax = 0;
    for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    b[i].d = float_to_fp16(d);
    for (int j = 0; j < kQK; ++j) b[i].qs[j] = int8_t(clampi(int(std::lround(x[j] * id)), -127, 127));
  }
}

void quant_q4_k(const float* x, BlockQ4_K* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
    // Per sub-block min/max, then 6-bit codes of scales and mins against the block maxima.
    float sub_d[8], sub_m[8], max_d = 0, max_m = 0;
    for (int j = 0; j < 8; ++j) {
      float lo, hi;
      minmax(x + 32 * j, 32, &lo, &hi);
      lo = std::min(lo, 0.0f);
      sub_d[j] = (hi - lo) / 15.0f;
      sub_m[j] = -lo;
      max_d = std::max(max_d, sub_d[j]);
      max_m = std::max(max_m, sub_m[j]);
    }
    const float d = max_d / 63.0f, dmin = max_m / 63.0f;
    b[i].d = float_to_fp16(d);
    b[i].dmin = float_to_fp16(dmin);
    const float dd = fp16_to_float(b[i].d), dm = fp16_to_float(b[i].dmin);
    uint8_t sc[8], mn[8];
    for (int j = 0; j < 8; ++j) {
      sc[j] = uint8_t(clampi(dd > 0 ? int(std::lround(sub_d[j] / dd)) : 0, 0, 63));
      mn[j] = uint8_t(clampi(dm > 0 ? int(std::lround(sub_m[j] / dm)) : 0, 0, 63));
    }
    std::memset(b[i].scales, 0, sizeof b[i].scales);
    for (int j = 0; j < 8; ++j) {
      if (j < 4) {
        b[i].scales[j] = sc[j];
        b[i].scales[j + 4] = mn[j];
      } else {
        b[i].scales[j + 4] = uint8_t((sc[j] & 0x0f) | ((mn[j] & 0x0f) << 4));
        b[i].scales[j - 4] |= uint8_t((sc[j] >> 4) << 6);
        b[i].scales[j] |= uint8_t((mn[j] >> 4) << 6);
      }
    }
    for (int j = 0; j < kQK_K / 64; ++j) {
      for (int half = 0; half < 2; ++half) {
        const int s = 2 * j + half;
        const float sd = dd * sc[s], sm = dm * mn[s];
        for (int l = 0; l < 32; ++l) {
          const int q = sd > 0 ? clampi(int(std::lround((x[32 * s + l] + sm) / sd)), 0, 15) : 0;
          uint8_t& byte = b[i].qs[32 * j + l];
          byte = half == 0 ? uint8_t(q) : uint8_t(byte | (q << 4));
        }
      }
    }
  }
}

void quant_q6_k(const float* x, BlockQ6_K* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
    float sub[16], max_abs_scale = 0;
    for (int j = 0; j < 16; ++j) {
      float amax = 0;
      for (int l = 0; l < 16; ++l) amax = std::max(amax, std::fabs(x[16 * j + l]));
      sub[j] = amax / 31.0f;
      max_abs_scale = std::max(max_abs_scale, sub[j]);
    }
    const float d = max_abs_scale / 127.0f;
    b[i].d = float_to_fp16(d);
    const float dd = fp16_to_float(b[i].d);
    for (int j = 0; j < 16; ++j) b[i].scales[j] = int8_t(dd > 0 ? clampi(int(std::lround(sub[j] / dd)), -128, 127) : 0);
    std::memset(b[i].ql, 0, sizeof b[i].ql);
    std::memset(b[i].qh, 0, sizeof b[i].qh);
    // Element e of a 128-half: l = e % 32, group g = e / 32 selects nibble and high-bit slot.
    for (int e = 0; e < kQK_K; ++e) {
      const int half = e / 128, r = e % 128, g = r / 32, l = r % 32;
      const float s = dd * float(b[i].scales[e / 16]);
      const int q = (s != 0 ? clampi(int(std::lround(x[e] / s)), -32, 31) : 0) + 32;
      uint8_t* ql = b[i].ql + 64 * half;
      uint8_t* qh = b[i].qh + 32 * half;
      const int ql_idx = l + (g & 1) * 32;
      ql[ql_idx] |= uint8_t((q & 0x0f) << ((g >> 1) * 4));
      qh[l] |= uint8_t(((q >> 4) & 3) << (2 * g));
    }
  }
}

}  // namespace

void dequantize_row(WeightType type, const void* src, float* dst, int64_t n) {
  switch (type) {
    case WeightType::kF32: std::memcpy(dst, src, size_t(n) * sizeof(float)); return;
    case WeightType::kF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_float(static_cast<const uint16_t*>(src)[i]);
      return;
    case WeightType::kBF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_float(static_cast<const uint16_t*>(src)[i]);
      return;
    case WeightType::kQ4_0: dequant_q4_0(static_cast<const BlockQ4_0*>(src), dst, n / kQK); return;
    case WeightType::kQ4_1: dequant_q4_1(static_cast<const BlockQ4_1*>(src), dst, n / kQK); return;
    case WeightType::kQ8_0: dequant_q8_0(static_cast<const BlockQ8_0*>(src), dst, n / kQK); return;
    case WeightType::kQ4_K: dequant_q4_k(static_cast<const BlockQ4_K*>(src), dst, n / kQK_K); return;
    case WeightType::kQ6_K: dequant_q6_k(static_cast<const BlockQ6_K*>(src), dst, n / kQK_K); return;
  }
}

void quantize_row(WeightType type, const float* src, void* dst, int64_t n) {
  switch (type) {
    case WeightType::kF32: std::memcpy(dst, src, size_t(n) * sizeof(float)); return;
    case WeightType::kF16:
      for (int64_t i = 0; i < n; ++i) static_cast<uint16_t*>(dst)[i] = float_to_fp16(src[i]);
      return;
    case WeightType::kBF16:
      for (int64_t i = 0; i < n; ++i) static_cast<uint16_t*>(dst)[i] = float_to_bf16(src[i]);
      return;
    case WeightType::kQ4_0: quant_q4_0(src, static_cast<BlockQ4_0*>(dst), n / kQK); return;
    case WeightType::kQ4_1: quant_q4_1(src, static_cast<BlockQ4_1*>(dst), n / kQK); return;
    case WeightType::kQ8_0: quant_q8_0(src, static_cast<BlockQ8_0*>(dst), n / kQK); return;
    case WeightType::kQ4_K: quant_q4_k(src, static_cast<BlockQ4_K*>(dst), n / kQK_K); return;
    case WeightType::kQ6_K: quant_q6_k(src, static_cast<BlockQ6_K*>(dst), n / kQK_K); return;
  }
}

float dot_row(WeightType type, const void* w, const float* x, int64_t n) {
  std::vector<float> tmp(static_cast<size_t>(n));
  dequantize_row(type, w, tmp.data(), n);
  float acc = 0.0f;
  for (int64_t i = 0; i < n; ++i) acc += tmp[size_t(i)] * x[i];
  return acc;
}

}  // namespace edgeinf::kernels::reference
