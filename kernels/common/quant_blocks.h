// Weight types and their block layouts, identical to the GGUF on-disk encoding.
// One definition serves the reference, CPU and CUDA kernels; sizes are pinned by static_assert.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/common/fp16.h"
#include "kernels/common/hd.h"

namespace edgeinf::kernels {

// GGUF tensor type ids (the ggml_type numbering).
enum class WeightType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ8_0 = 8,
  kQ4_K = 12,
  kQ6_K = 14,
  kBF16 = 30,
};

inline constexpr int kQK = 32;     // elements per block of the legacy quants
inline constexpr int kQK_K = 256;  // elements per super-block of the K-quants
inline constexpr int kKScaleBytes = 12;

// Q4_0: x = d * (q - 8), q in [0, 15]; low nibbles hold elements 0..15, high nibbles 16..31.
struct BlockQ4_0 {
  uint16_t d;
  uint8_t qs[kQK / 2];
};
static_assert(sizeof(BlockQ4_0) == 2 + kQK / 2);

// Q4_1: x = d * q + m.
struct BlockQ4_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qs[kQK / 2];
};
static_assert(sizeof(BlockQ4_1) == 4 + kQK / 2);

// Q8_0: x = d * q, q in [-128, 127].
struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[kQK];
};
static_assert(sizeof(BlockQ8_0) == 2 + kQK);

// Q4_K: 8 sub-blocks of 32 with 6-bit scales and mins; x = d*sc*q - dmin*m.
struct BlockQ4_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[kKScaleBytes];
  uint8_t qs[kQK_K / 2];
};
static_assert(sizeof(BlockQ4_K) == 4 + kKScaleBytes + kQK_K / 2);

// Q6_K: 16 sub-blocks of 16 with int8 scales; x = d * sc * (q - 32), q 6-bit.
struct BlockQ6_K {
  uint8_t ql[kQK_K / 2];
  uint8_t qh[kQK_K / 4];
  int8_t scales[kQK_K / 16];
  uint16_t d;
};
static_assert(sizeof(BlockQ6_K) == kQK_K / 2 + kQK_K / 4 + kQK_K / 16 + 2);

// Elements per block and bytes per block of each type (block = 1 element for float types).
struct WeightTypeTraits {
  const char* name;
  int block_elems;
  int block_bytes;
};

// Returns nullptr for types the engine cannot run.
inline const WeightTypeTraits* weight_type_traits(uint32_t type) {
  static constexpr WeightTypeTraits kF32{"F32", 1, 4};
  static constexpr WeightTypeTraits kF16{"F16", 1, 2};
  static constexpr WeightTypeTraits kBF16{"BF16", 1, 2};
  static constexpr WeightTypeTraits kQ4_0{"Q4_0", kQK, sizeof(BlockQ4_0)};
  static constexpr WeightTypeTraits kQ4_1{"Q4_1", kQK, sizeof(BlockQ4_1)};
  static constexpr WeightTypeTraits kQ8_0{"Q8_0", kQK, sizeof(BlockQ8_0)};
  static constexpr WeightTypeTraits kQ4_K{"Q4_K", kQK_K, sizeof(BlockQ4_K)};
  static constexpr WeightTypeTraits kQ6_K{"Q6_K", kQK_K, sizeof(BlockQ6_K)};
  switch (WeightType(type)) {
    case WeightType::kF32: return &kF32;
    case WeightType::kF16: return &kF16;
    case WeightType::kBF16: return &kBF16;
    case WeightType::kQ4_0: return &kQ4_0;
    case WeightType::kQ4_1: return &kQ4_1;
    case WeightType::kQ8_0: return &kQ8_0;
    case WeightType::kQ4_K: return &kQ4_K;
    case WeightType::kQ6_K: return &kQ6_K;
  }
  return nullptr;
}

// Bytes of one row of n elements; n must be a multiple of the block size.
inline size_t row_bytes(WeightType type, int64_t n) {
  const WeightTypeTraits* t = weight_type_traits(uint32_t(type));
  return size_t(n / t->block_elems) * size_t(t->block_bytes);
}

// The 6-bit scale and min of sub-block j (0..7) of a Q4_K super-block.
EDGEINF_HD void q4k_scale_min(int j, const uint8_t* q, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

}  // namespace edgeinf::kernels
