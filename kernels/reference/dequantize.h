// Scalar dequantisation of GGUF weight rows: the specification every faster kernel is tested against.
#pragma once

#include <cstdint>

#include "kernels/common/quant_blocks.h"

namespace edgeinf::kernels::reference {

// Writes n floats decoded from `src` (n a multiple of the type's block size) to dst.
void dequantize_row(WeightType type, const void* src, float* dst, int64_t n);

// Encodes n floats as `type` (the inverse used by tests; K-quants and Q4 use simple per-block
// min/max rules, which is all a test needs to build weights of that type).
void quantize_row(WeightType type, const float* src, void* dst, int64_t n);

// Dot product of one weight row with n float activations, float accumulator.
float dot_row(WeightType type, const void* w, const float* x, int64_t n);

}  // namespace edgeinf::kernels::reference
