// The element types a KV cache stores its rows in, and their encoders, shared by host and device
// code. A cache row holds n_kv_head * head_dim values: f32 (exact), f16 (IEEE half, round to
// nearest even) or q8 (GGUF's Q8_0: int8 values with an fp16 scale per block of 32, each block
// inside one head). Offsets into a cache stay counted in values; kv_value_offset turns them into
// bytes.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "kernels/common/fp16.h"
#include "kernels/common/hd.h"
#include "kernels/common/quant_blocks.h"

namespace edgeinf::kernels {

// Whether a cache can store its rows as `type` (f32, f16, q8).
EDGEINF_HD bool kv_type_supported(WeightType type) {
  return type == WeightType::kF32 || type == WeightType::kF16 || type == WeightType::kQ8_0;
}

// Values per block of a cache type (32 for q8, else 1): head sizes must be multiples of it.
EDGEINF_HD int kv_block_values(WeightType type) { return type == WeightType::kQ8_0 ? kQK : 1; }

// Bytes before value i of a cache of `type` (i a multiple of the block size).
EDGEINF_HD size_t kv_value_offset(WeightType type, int64_t i) {
  switch (type) {
    case WeightType::kF16: return size_t(i) * 2;
    case WeightType::kQ8_0: return size_t(i / kQK) * sizeof(BlockQ8_0);
    default: return size_t(i) * 4;
  }
}

// Value i of a cache of type T (the decoder device kernels inline for each type).
template <WeightType T>
EDGEINF_HD float kv_value(const void* cache, int64_t i) {
  if constexpr (T == WeightType::kF16) {
    return fp16_to_float(static_cast<const uint16_t*>(cache)[i]);
  } else if constexpr (T == WeightType::kQ8_0) {
    const BlockQ8_0& b = static_cast<const BlockQ8_0*>(cache)[i / kQK];
    return float(b.qs[i % kQK]) * fp16_to_float(b.d);
  } else {
    return static_cast<const float*>(cache)[i];
  }
}

// One Q8_0 block of 32 values: d = max |x| / 127 (stored as fp16), q = round(x / d).
EDGEINF_HD void encode_q8_0_block(const float* x, BlockQ8_0* b) {
  float amax = 0.0f;
  for (int j = 0; j < kQK; ++j) amax = fmaxf(amax, fabsf(x[j]));
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  b->d = float_to_fp16(d);
  for (int j = 0; j < kQK; ++j) {
    const float q = roundf(x[j] * id);
    b->qs[j] = int8_t(q > 127.0f ? 127.0f : (q < -127.0f ? -127.0f : q));
  }
}

// Encodes n values (a multiple of the block size) into a cache row of `type` at dst.
EDGEINF_HD void encode_kv_values(WeightType type, const float* x, void* dst, int64_t n) {
  switch (type) {
    case WeightType::kF16: {
      uint16_t* h = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) h[i] = float_to_fp16(x[i]);
      return;
    }
    case WeightType::kQ8_0: {
      BlockQ8_0* b = static_cast<BlockQ8_0*>(dst);
      for (int64_t i = 0; i < n / kQK; ++i) encode_q8_0_block(x + i * kQK, b + i);
      return;
    }
    default: {
      float* f = static_cast<float*>(dst);
      for (int64_t i = 0; i < n; ++i) f[i] = x[i];
      return;
    }
  }
}

}  // namespace edgeinf::kernels
