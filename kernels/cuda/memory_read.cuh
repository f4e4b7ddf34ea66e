// The memory read of one (token, query head) shared by the memory kernels: sigma(q) goes to shared
// memory and the denominator sigma(q).z is reduced once per block; read_out(j) then gives
// (sigma(q).M[:, j]) / (sigma(q).z + eps). Element math from kernels/common/linear_memory.h.
#pragma once

#include "kernels/common/linear_memory.h"

namespace edgeinf::kernels::cuda {

constexpr int kMemoryMaxHeadDim = 256;

struct MemoryRead {
  const float* sq;  // sigma(q), in shared memory
  const float* m;   // M of the KV head [d, d]
  float denom;
  int d;
  int64_t t;  // the block's token and query head
  int h;

  __device__ float read_out(int j) const {
    float num = 0.0f;
    for (int i = 0; i < d; ++i) num += sq[i] * m[int64_t(i) * d + j];
    return memory_read(num, denom);
  }
};

// Launch shapes the memory-read kernels take: head_dim <= kMemoryMaxHeadDim, whole GQA groups.
inline bool memory_read_shape_ok(int n_head, int n_kv_head, int head_dim) {
  return head_dim <= kMemoryMaxHeadDim && n_kv_head > 0 && n_head % n_kv_head == 0;
}

// The read of block (token t, query head h) = (blockIdx.x / n_head, blockIdx.x % n_head), over
// queries q [n_tok, n_head * d] (row stride q_stride) and the memory of h's KV head. Called by every
// thread of the block; sq and partial are shared arrays of kMemoryMaxHeadDim.
__device__ inline MemoryRead begin_memory_read(const float* q_rows, int64_t q_stride, const float* m_all,
                                               const float* z_all, int n_head, int n_kv_head, int d, float* sq,
                                               float* partial) {
  const int64_t t = blockIdx.x / n_head;
  const int h = int(blockIdx.x % n_head);
  const int g = h / (n_head / n_kv_head);
  const float* q = q_rows + t * q_stride + int64_t(h) * d;
  const float* m = m_all + int64_t(g) * d * d;
  const float* z = z_all + int64_t(g) * d;
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
  return MemoryRead{sq, m, partial[0], d, t, h};
}

}  // namespace edgeinf::kernels::cuda
