// Linear memory gate values: one warp per (token, head); lanes stride along the 2 * n_head *
// head_dim inputs ([A_mem; A_local]) and reduce with shuffles.
#include "kernels/common/linear_memory.h"
#include "kernels/cuda/ops.h"

namespace edgeinf::kernels::cuda {
namespace {

constexpr int kWarp = 32;
constexpr int kWarpsPerBlock = 4;

__global__ void gate_linear_kernel(GateLinearParams p) {
  const int lane = threadIdx.x % kWarp;
  const int64_t row = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  if (row >= p.n_tok * p.n_head) return;
  const int64_t t = row / p.n_head;
  const int h = int(row % p.n_head);
  const int64_t q_dim = int64_t(p.n_head) * p.head_dim;
  const float* w = p.w + int64_t(h) * 2 * q_dim;
  const float* a_mem = p.a_mem + t * p.stride;
  const float* a_local = p.a_local + t * p.stride;
  float s = 0.0f;
  for (int64_t i = lane; i < q_dim; i += kWarp) s += w[i] * a_mem[i] + w[q_dim + i] * a_local[i];
  for (int off = kWarp / 2; off > 0; off /= 2) s += __shfl_down_sync(0xffffffffu, s, off);
  if (lane == 0) p.gate[row] = sigmoid(s + p.bias[h]);
}

}  // namespace

cudaError_t gate_linear_forward(const GateLinearParams& p, cudaStream_t stream) {
  const int64_t rows = p.n_tok * p.n_head;
  if (rows <= 0) return cudaSuccess;
  gate_linear_kernel<<<unsigned((rows + kWarpsPerBlock - 1) / kWarpsPerBlock), kWarpsPerBlock * kWarp, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace edgeinf::kernels::cuda
