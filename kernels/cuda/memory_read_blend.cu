// Memory decompression fused with the gate: one block per (token, query head); each thread
// produces output dimensions j: g * read_out(j) + (1 - g) * a_local[j]. The read-out never goes
// to global memory.
#include "kernels/cuda/memory_read.cuh"
#include "kernels/cuda/ops.h"

namespace edgeinf::kernels::cuda {
namespace {

__global__ void memory_read_blend_kernel(MemoryReadBlendParams p) {
  __shared__ float sq[kMemoryMaxHeadDim];
  __shared__ float partial[kMemoryMaxHeadDim];
  const int64_t t = blockIdx.x / p.n_head;
  const int h = int(blockIdx.x % p.n_head);
  const int g = h / (p.n_head / p.n_kv_head);
  const int d = p.head_dim;
  const MemoryRead r = begin_memory_read(p.q + t * p.q_stride + int64_t(h) * d, p.m + int64_t(g) * d * d,
                                         p.z + int64_t(g) * d, d, sq, partial);
  const float gate = p.gate[t * p.n_head + h];
  for (int j = threadIdx.x; j < d; j += blockDim.x) {
    const int64_t o = t * p.stride + int64_t(h) * d + j;
    p.out[o] = gate_blend(gate, r.read_out(j), p.a_local[o]);
  }
}

}  // namespace

cudaError_t memory_read_blend(const MemoryReadBlendParams& p, cudaStream_t stream) {
  if (p.head_dim > kMemoryMaxHeadDim || p.n_kv_head <= 0 || p.n_head % p.n_kv_head != 0) return cudaErrorInvalidValue;
  const int64_t blocks = p.n_tok * p.n_head;
  if (blocks <= 0) return cudaSuccess;
  memory_read_blend_kernel<<<unsigned(blocks), 128, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace edgeinf::kernels::cuda
