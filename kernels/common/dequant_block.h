// One element of an encoded weight row, shared by host and device code: the GPU's dequantising
// GEMV decodes with these, and the CPU tests check them against the reference decoders.
#pragma once

#include <cstdint>

#include "kernels/common/fp16.h"
#include "kernels/common/hd.h"
#include "kernels/common/quant_blocks.h"

namespace edgeinf::kernels {

// Element j (0..31) of a Q4_0 / Q4_1 / Q8_0 block.
EDGEINF_HD float q4_0_value(const BlockQ4_0& b, int j) {
  const int q = j < kQK / 2 ? (b.qs[j] & 0x0f) : (b.qs[j - kQK / 2] >> 4);
  return float(q - 8) * fp16_to_float(b.d);
}

EDGEINF_HD float q4_1_value(const BlockQ4_1& b, int j) {
  const int q = j < kQK / 2 ? (b.qs[j] & 0x0f) : (b.qs[j - kQK / 2] >> 4);
  return float(q) * fp16_to_float(b.d) + fp16_to_float(b.m);
}

EDGEINF_HD float q8_0_value(const BlockQ8_0& b, int j) { return float(b.qs[j]) * fp16_to_float(b.d); }

// Element j (0..255) of a Q4_K super-block: 4 chunks of 64, each the low then the high nibbles of
// 32 bytes, with sub-block scales 2c and 2c + 1.
EDGEINF_HD float q4_k_value(const BlockQ4_K& b, int j) {
  const int c = j / 64, r = j % 64;
  const uint8_t byte = b.qs[c * 32 + (r % 32)];
  uint8_t sc = 0, m = 0;
  q4k_scale_min(2 * c + (r >= 32 ? 1 : 0), b.scales, &sc, &m);
  const float d = fp16_to_float(b.d) * float(sc), mn = fp16_to_float(b.dmin) * float(m);
  return d * float(r < 32 ? (byte & 0x0f) : (byte >> 4)) - mn;
}

// Element j (0..255) of a Q6_K super-block: 2 halves of 128, each 4 runs of 32 built from low
// nibbles (ql) and 2-bit highs (qh), one int8 scale per 16 elements.
EDGEINF_HD float q6_k_value(const BlockQ6_K& b, int j) {
  const int half = j / 128, r = j % 128, run = r / 32, l = r % 32;
  const uint8_t* ql = b.ql + 64 * half;
  const uint8_t* qh = b.qh + 32 * half;
  const int8_t* sc = b.scales + 8 * half;
  const int low = run == 0   ? (ql[l] & 0x0f)
                  : run == 1 ? (ql[l + 32] & 0x0f)
                  : run == 2 ? (ql[l] >> 4)
                             : (ql[l + 32] >> 4);
  const int high = (qh[l] >> (2 * run)) & 3;
  const int q = (low | (high << 4)) - 32;
  return fp16_to_float(b.d) * float(sc[l / 16 + 2 * run]) * float(q);
}

// Element i of an encoded row of any supported type.
EDGEINF_HD float weight_value(WeightType type, const void* row, int64_t i) {
  switch (type) {
    case WeightType::kF32: return static_cast<const float*>(row)[i];
    case WeightType::kF16: return fp16_to_float(static_cast<const uint16_t*>(row)[i]);
    case WeightType::kBF16: return bf16_to_float(static_cast<const uint16_t*>(row)[i]);
    case WeightType::kQ4_0: return q4_0_value(static_cast<const BlockQ4_0*>(row)[i / kQK], int(i % kQK));
    case WeightType::kQ4_1: return q4_1_value(static_cast<const BlockQ4_1*>(row)[i / kQK], int(i % kQK));
    case WeightType::kQ8_0: return q8_0_value(static_cast<const BlockQ8_0*>(row)[i / kQK], int(i % kQK));
    case WeightType::kQ4_K: return q4_k_value(static_cast<const BlockQ4_K*>(row)[i / kQK_K], int(i % kQK_K));
    case WeightType::kQ6_K: return q6_k_value(static_cast<const BlockQ6_K*>(row)[i / kQK_K], int(i % kQK_K));
  }
  return 0.0f;
}

}  // namespace edgeinf::kernels
