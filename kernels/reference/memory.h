// Scalar compressed-memory ops of EdgeInfinite: the specification of the CPU and CUDA kernels.
#pragma once

#include "kernels/common/op_params.h"

namespace edgeinf::kernels::reference {

void memory_compress(const MemoryCompressParams& p);
void memory_decompress(const MemoryDecompressParams& p);
void gate_blend_forward(const GateBlendParams& p);
void gate_linear_forward(const GateLinearParams& p);
void head_projection_forward(const HeadProjectionParams& p);

}  // namespace edgeinf::kernels::reference
