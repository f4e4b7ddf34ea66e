// Token embeddings: one thread per output element, decoding the token's row with
// kernels/common/dequant_block.h.
#include "kernels/common/dequant_block.h"
#include "kernels/cuda/ops.h"

namespace edgeinf::kernels::cuda {
namespace {

__global__ void embed_kernel(EmbedParams p) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= p.n_tok * p.n_embd) return;
  const int64_t t = idx / p.n_embd, i = idx % p.n_embd;
  const auto* row = static_cast<const uint8_t*>(p.w) + int64_t(p.tokens[t]) * p.w_row_bytes;
  p.out[idx] = weight_value(p.w_type, row, i);
}

}  // namespace

cudaError_t embed_forward(const EmbedParams& p, cudaStream_t stream) {
  const int64_t total = p.n_tok * p.n_embd;
  if (total <= 0) return cudaSuccess;
  constexpr int kThreads = 256;
  embed_kernel<<<unsigned((total + kThreads - 1) / kThreads), kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace edgeinf::kernels::cuda
