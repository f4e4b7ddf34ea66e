// Gate blend: one thread per output element, g * A_mem + (1 - g) * A_local.
#include "kernels/common/linear_memory.h"
#include "kernels/cuda/ops.h"

namespace edgeinf::kernels::cuda {
namespace {

__global__ void gate_blend_kernel(GateBlendParams p) {
  const int64_t q_dim = int64_t(p.n_head) * p.head_dim;
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= p.n_tok * q_dim) return;
  const int64_t t = idx / q_dim, i = idx % q_dim;
  const float g = p.gate[t * p.n_head + i / p.head_dim];
  const int64_t o = t * p.stride + i;
  p.out[o] = gate_blend(g, p.a_mem[o], p.a_local[o]);
}

}  // namespace

cudaError_t gate_blend_forward(const GateBlendParams& p, cudaStream_t stream) {
  const int64_t total = p.n_tok * p.n_head * p.head_dim;
  if (total <= 0) return cudaSuccess;
  constexpr int kThreads = 256;
  gate_blend_kernel<<<unsigned((total + kThreads - 1) / kThreads), kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace edgeinf::kernels::cuda
