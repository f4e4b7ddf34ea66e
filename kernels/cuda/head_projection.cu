// The memory's query projection: one thread per output element, its row of P against the token's
// head (head_dim multiply-adds; the matrices are small and read from cache).
#include "kernels/common/linear_memory.h"
#include "kernels/cuda/ops.h"

namespace edgeinf::kernels::cuda {
namespace {

__global__ void head_projection_kernel(HeadProjectionParams p) {
  const int64_t q_dim = int64_t(p.n_head) * p.head_dim;
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= p.n_tok * q_dim) return;
  const int64_t t = idx / q_dim, i = idx % q_dim;
  const int64_t h = i / p.head_dim;
  p.y[t * p.y_stride + i] = head_project(p.w + i * p.head_dim, p.x + t * p.x_stride + h * p.head_dim, p.head_dim);
}

}  // namespace

cudaError_t head_projection_forward(const HeadProjectionParams& p, cudaStream_t stream) {
  const int64_t total = p.n_tok * p.n_head * p.head_dim;
  if (total <= 0) return cudaSuccess;
  constexpr int kThreads = 256;
  head_projection_kernel<<<unsigned((total + kThreads - 1) / kThreads), kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace edgeinf::kernels::cuda
