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

  __device__ float read_out(int j) const {
    float num = 0.0f;
    for (int i = 0; i < d; ++i) num += sq[i] * m[int64_t(i) * d + j];
    return memory_read(num, denom);
  }
};

// Called by every thread of the block; sq and partial are shared arrays of kMemoryMaxHeadDim.
__device__ inline MemoryRead begin_memory_read(const float* q, const float* m, const float* z, int d, float* sq,
                                               float* partial) {
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
  return MemoryRead{sq, m, partial[0], d};
}

}  // namespace edgeinf::kernels::cuda
