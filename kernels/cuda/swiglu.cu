// SwiGLU: out = silu(gate) * up, one thread per element.
#include "kernels/cuda/ops.h"

namespace edgeinf::kernels::cuda {
namespace {

__global__ void swiglu_kernel(SwigluParams p) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= p.n_tok * p.n_ff) return;
  const int64_t t = idx / p.n_ff, i = idx % p.n_ff;
  const float g = p.gate[t * p.stride + i];
  p.out[t * p.stride + i] = g / (1.0f + expf(-g)) * p.up[t * p.stride + i];
}

}  // namespace

cudaError_t swiglu_forward(const SwigluParams& p, cudaStream_t stream) {
  const int64_t total = p.n_tok * p.n_ff;
  if (total <= 0) return cudaSuccess;
  constexpr int kThreads = 256;
  swiglu_kernel<<<unsigned((total + kThreads - 1) / kThreads), kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace edgeinf::kernels::cuda
