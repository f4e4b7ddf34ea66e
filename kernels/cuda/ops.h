// CUDA kernels: the contracts of kernels/reference/ops.h and memory.h on device pointers, one op per
// file, each launched on the given stream. Every pointer in the params is a device pointer.
#pragma once

#include <cuda_runtime.h>

#include "kernels/common/op_params.h"

namespace edgeinf::kernels::cuda {

cudaError_t rmsnorm_forward(const RmsNormParams& p, cudaStream_t stream);
cudaError_t rope_forward(const RopeParams& p, cudaStream_t stream);
cudaError_t swiglu_forward(const SwigluParams& p, cudaStream_t stream);
cudaError_t embed_forward(const EmbedParams& p, cudaStream_t stream);
cudaError_t add_forward(const AddParams& p, cudaStream_t stream);
// Segment attention with online softmax over sink (+) window (+) segment, GQA, causal inside the
// segment; serves prefill segments and single-token decode alike. head_dim <= 256.
cudaError_t attention_forward(const AttentionParams& p, cudaStream_t stream);
// Memory read fused with the gate blend. head_dim <= 256.
cudaError_t memory_read_blend(const MemoryReadBlendParams& p, cudaStream_t stream);
// Memory decompression alone: a_mem = sigma(q) M / (sigma(q) z + eps). head_dim <= 256.
cudaError_t memory_decompress(const MemoryDecompressParams& p, cudaStream_t stream);
// Linear gate values g = sigmoid(W [A_mem; A_local] + b) per token and head, into p.gate.
cudaError_t gate_linear_forward(const GateLinearParams& p, cudaStream_t stream);
// The blend out = g A_mem + (1 - g) A_local with per-token, per-head gate values.
cudaError_t gate_blend_forward(const GateBlendParams& p, cudaStream_t stream);
// The memory's query projection y = P[h] x per token and head.
cudaError_t head_projection_forward(const HeadProjectionParams& p, cudaStream_t stream);
// Memory compression (linear or delta rule). scratch: n_tok * n_kv_head * head_dim floats for the
// delta rule's retrieval (may be null for the linear rule). head_dim <= 256.
cudaError_t memory_compress(const MemoryCompressParams& p, float* scratch, cudaStream_t stream);
// KV cache rows (kernels/common/kv_rows.h): n values (a multiple of the type's block) from f32 to
// `type` at dst, and back.
cudaError_t kv_encode(WeightType type, const float* x, void* dst, int64_t n, cudaStream_t stream);
cudaError_t kv_decode(WeightType type, const void* src, float* y, int64_t n, cudaStream_t stream);
// Dequantising GEMV, y = W x (+ bias), for up to 8 tokens (decode); any supported weight type.
cudaError_t gemv_forward(const MatmulParams& p, cudaStream_t stream);
// Decodes the whole weight matrix of p into w_f32 [n_out, n_in].
cudaError_t dequantize_matrix(const MatmulParams& p, float* w_f32, cudaStream_t stream);
// Prefill GEMM: decodes W into w_scratch (n_out * n_in floats), then y = x W^T (+ bias) with
// cuBLAS (cublas_handle: a cublasHandle_t).
cudaError_t gemm_forward(const MatmulParams& p, float* w_scratch, void* cublas_handle, cudaStream_t stream);

}  // namespace edgeinf::kernels::cuda
