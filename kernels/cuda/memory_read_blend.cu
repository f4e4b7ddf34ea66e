// Memory decompression fused with the gate: one block per (token, query head). sigma(q) goes to
// shared memory, the denominator sigma(q).z is reduced once, and each thread produces output
// dimensions j: g * (sigma(q).M[:, j]) / (sigma(q).z + eps) + (1 - g) * a_local[j]. The read-out
// never goes to global memory. Element math from kernels/common/linear_memory.h.
#include "kernels/common/linear_memory.h"
#include "kernels/cuda/ops.h"

namespace edgeinf::kernels::cuda {
namespace {

constexpr int kMaxHeadDim = 256;

__global__ void memory_read_blend_kernel(MemoryReadBlendParams p) {
  __shared__ float sq[kMaxHeadDim];
  __shared__ float partial[kMaxHeadDim];
  const int64_t t = blockIdx.x / p.n_head;
  const int h = int(blockIdx.x % p.n_head);
  const int g = h / (p.n_head / p.n_kv_head);
  const int d = p.head_dim;
  const float* q = p.q + t * p.q_stride + int64_t(h) * d;
  const float* m = p.m + int64_t(g) * d * d;
  const float* z = p.z + int64_t(g) * d;
  for (int i = threadIdx.x; i < d; i += blockDim.x) {
    sq[i] = elu1(q[i]);
    partial[i] = sq[i] * z[i];
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    float denom = 0.0f;
    for (int i = 0; i < d; ++i) denom += partial[i];
    partial[0] = denom;
  }
  __syncthreads();
  const float denom = partial[0];
  const float gate = p.gate[t * p.n_head + h];
  for (int j = threadIdx.x; j < d; j += blockDim.x) {
    float num = 0.0f;
    for (int i = 0; i < d; ++i) num += sq[i] * m[int64_t(i) * d + j];
    const int64_t o = t * p.stride + int64_t(h) * d + j;
    p.out[o] = gate_blend(gate, memory_read(num, denom), p.a_local[o]);
  }
}

}  // namespace

cudaError_t memory_read_blend(const MemoryReadBlendParams& p, cudaStream_t stream) {
  if (p.head_dim > kMaxHeadDim || p.n_kv_head <= 0 || p.n_head % p.n_kv_head != 0) return cudaErrorInvalidValue;
  const int64_t blocks = p.n_tok * p.n_head;
  if (blocks <= 0) return cudaSuccess;
  memory_read_blend_kernel<<<unsigned(blocks), 128, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace edgeinf::kernels::cuda
