// Memory decompression on its own (the linear gate needs A_mem before it can be computed): one
// block per (token, query head), each thread writing output dimensions j.
#include "kernels/cuda/memory_read.cuh"
#include "kernels/cuda/ops.h"

namespace edgeinf::kernels::cuda {
namespace {

__global__ void memory_decompress_kernel(MemoryDecompressParams p) {
  __shared__ float sq[kMemoryMaxHeadDim];
  __shared__ float partial[kMemoryMaxHeadDim];
  const int64_t t = blockIdx.x / p.n_head;
  const int h = int(blockIdx.x % p.n_head);
  const int g = h / (p.n_head / p.n_kv_head);
  const int d = p.head_dim;
  const MemoryRead r = begin_memory_read(p.q + t * p.q_stride + int64_t(h) * d, p.m + int64_t(g) * d * d,
                                         p.z + int64_t(g) * d, d, sq, partial);
  for (int j = threadIdx.x; j < d; j += blockDim.x) p.a_mem[t * p.q_stride + int64_t(h) * d + j] = r.read_out(j);
}

}  // namespace

cudaError_t memory_decompress(const MemoryDecompressParams& p, cudaStream_t stream) {
  if (p.head_dim > kMemoryMaxHeadDim || p.n_kv_head <= 0 || p.n_head % p.n_kv_head != 0) return cudaErrorInvalidValue;
  const int64_t blocks = p.n_tok * p.n_head;
  if (blocks <= 0) return cudaSuccess;
  memory_decompress_kernel<<<unsigned(blocks), 128, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace edgeinf::kernels::cuda
