// RMSNorm: one block per token; the sum of squares is reduced in shared memory.
#include "kernels/cuda/ops.h"

namespace edgeinf::kernels::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void rmsnorm_kernel(RmsNormParams p) {
  __shared__ float partial[kThreads];
  const int64_t t = blockIdx.x;
  const float* x = p.x + t * p.n_embd;
  float* out = p.out + t * p.n_embd;
  float ss = 0.0f;
  for (int64_t i = threadIdx.x; i < p.n_embd; i += blockDim.x) ss += x[i] * x[i];
  partial[threadIdx.x] = ss;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
    __syncthreads();
  }
  const float inv = 1.0f / sqrtf(partial[0] / float(p.n_embd) + p.eps);
  for (int64_t i = threadIdx.x; i < p.n_embd; i += blockDim.x) out[i] = x[i] * inv * p.weight[i];
}

}  // namespace

cudaError_t rmsnorm_forward(const RmsNormParams& p, cudaStream_t stream) {
  if (p.n_tok <= 0) return cudaSuccess;
  rmsnorm_kernel<<<unsigned(p.n_tok), kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace edgeinf::kernels::cuda
