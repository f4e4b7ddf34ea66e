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
  const int d = p.head_dim;
  const MemoryRead r = begin_memory_read(p.q, p.q_stride, p.m, p.z, p.n_head, p.n_kv_head, d, sq, partial);
  const float gate = p.gate[r.t * p.n_head + r.h];
  for (int j = threadIdx.x; j < d; j += blockDim.x) {
    const int64_t o = r.t * p.stride + int64_t(r.h) * d + j;
    p.out[o] = gate_blend(gate, r.read_out(j), p.a_local[o]);
  }
}

}  // namespace

cudaError_t memory_read_blend(const MemoryReadBlendParams& p, cudaStream_t stream) {
  if (!memory_read_shape_ok(p.n_head, p.n_kv_head, p.head_dim)) return cudaErrorInvalidValue;
  const int64_t blocks = p.n_tok * p.n_head;
  if (blocks <= 0) return cudaSuccess;
  memory_read_blend_kernel<<<unsigned(blocks), 128, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace edgeinf::kernels::cuda
