// CPU model ops: the same contracts as kernels/reference/ops.h, vectorised and multi-threaded.
#pragma once

#include <span>

#include "kernels/common/op_params.h"
#include "kernels/cpu/thread_pool.h"

namespace edgeinf::kernels::cpu {

void matmul_forward(const MatmulParams& p, ThreadPool& pool);
// Several independent matmuls with the same input rows (Q/K/V, gate/up) in one parallel step (at most 7).
void matmul_forward_batch(std::span<const MatmulParams> ps, ThreadPool& pool);
void rmsnorm_forward(const RmsNormParams& p, ThreadPool& pool);
void rope_forward(const RopeParams& p, ThreadPool& pool);
void attention_forward(const AttentionParams& p, ThreadPool& pool);
void swiglu_forward(const SwigluParams& p, ThreadPool& pool);
void memory_compress(const MemoryCompressParams& p, ThreadPool& pool);
void memory_decompress(const MemoryDecompressParams& p, ThreadPool& pool);
void gate_blend_forward(const GateBlendParams& p, ThreadPool& pool);
void head_projection_forward(const HeadProjectionParams& p, ThreadPool& pool);

}  // namespace edgeinf::kernels::cpu
