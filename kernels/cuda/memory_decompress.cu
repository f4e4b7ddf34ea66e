// Memory decompression on its own (the linear gate needs A_mem before it can be computed): one
// block per (token, query head), each thread writing output dimensions j.
#include "kernels/cuda/memory_read.cuh"
#include "kernels/cuda/ops.h"

namespace edgeinf::kernels::cuda {
namespace {

__global__ void memory_decompress_kernel(MemoryDecompressParams p) {
  __shared__ float sq[kMemoryMaxHeadDim];
  __shared__ float partial[kMemoryMaxHeadDim];
  const int d = p.head_dim;
  const MemoryRead r = begin_memory_read(p.q, p.q_stride, p.m, p.z, p.n_head, p.n_kv_head, d, sq, partial);
  for (int j = threadIdx.x; j < d; j += blockDim.x) p.a_mem[r.t * p.q_stride + int64_t(r.h) * d + j] = r.read_out(j);
}

}  // namespace

cudaError_t memory_decompress(const MemoryDecompressParams& p, cudaStream_t stream) {
  if (!memory_read_shape_ok(p.n_head, p.n_kv_head, p.head_dim)) return cudaErrorInvalidValue;
  const int64_t blocks = p.n_tok * p.n_head;
  if (blocks <= 0) return cudaSuccess;
  memory_decompress_kernel<<<unsigned(blocks), 128, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace edgeinf::kernels::cuda
