// Memory compression with the linear or the delta rule. Two launches per call: (1) for the delta
// rule, every token's retrieval R = sigma(K) M / (sigma(K) z + eps) from the memory as it was
// before the call, one block per (token, KV head), into the caller's scratch; (2) the update,
// one thread per (KV head, i, j): M[i][j] += sum_t sigma(k_t,i) (v_t,j - R_t,j), and z[i] for
// j == 0. Element math from kernels/common/linear_memory.h.
#include "kernels/common/linear_memory.h"
#include "kernels/cuda/ops.h"

namespace edgeinf::kernels::cuda {
namespace {

constexpr int kMaxHeadDim = 256;

__global__ void retrieve_kernel(MemoryCompressParams p, float* r) {
  __shared__ float sk[kMaxHeadDim];
  __shared__ float den_s;
  const int64_t t = blockIdx.x / p.n_kv_head;
  const int g = int(blockIdx.x % p.n_kv_head);
  const int d = p.head_dim;
  const float* k = p.k + t * p.kv_stride + int64_t(g) * d;
  const float* m = p.m + int64_t(g) * d * d;
  const float* z = p.z + int64_t(g) * d;
  for (int i = threadIdx.x; i < d; i += blockDim.x) sk[i] = elu1(k[i]);
  __syncthreads();
  if (threadIdx.x == 0) {
    float den = 0.0f;
    for (int i = 0; i < d; ++i) den += sk[i] * z[i];
    den_s = den;
  }
  __syncthreads();
  for (int j = threadIdx.x; j < d; j += blockDim.x) {
    float num = 0.0f;
    for (int i = 0; i < d; ++i) num += sk[i] * m[int64_t(i) * d + j];
    r[(t * p.n_kv_head + g) * d + j] = memory_read(num, den_s);
  }
}

__global__ void update_kernel(MemoryCompressParams p, const float* r) {
  const int d = p.head_dim;
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= int64_t(p.n_kv_head) * d * d) return;
  const int g = int(idx / (int64_t(d) * d));
  const int i = int((idx / d) % d);
  const int j = int(idx % d);
  float mij = p.m[idx];
  float zi = 0.0f;
  for (int64_t t = 0; t < p.n_tok; ++t) {
    const float ski = elu1(p.k[t * p.kv_stride + int64_t(g) * d + i]);
    const float vj = p.v[t * p.kv_stride + int64_t(g) * d + j];
    mij = memory_write(mij, ski, vj, r != nullptr ? r[(t * p.n_kv_head + g) * d + j] : 0.0f);
    zi += ski;
  }
  p.m[idx] = mij;
  if (j == 0) p.z[int64_t(g) * d + i] += zi;
}

}  // namespace

cudaError_t memory_compress(const MemoryCompressParams& p, float* scratch, cudaStream_t stream) {
  if (p.head_dim > kMaxHeadDim) return cudaErrorInvalidValue;
  if (p.n_tok <= 0) return cudaSuccess;
  if (p.delta) {
    if (scratch == nullptr) return cudaErrorInvalidValue;
    retrieve_kernel<<<unsigned(p.n_tok * p.n_kv_head), 64, 0, stream>>>(p, scratch);
  }
  const int64_t total = int64_t(p.n_kv_head) * p.head_dim * p.head_dim;
  constexpr int kThreads = 256;
  update_kernel<<<unsigned((total + kThreads - 1) / kThreads), kThreads, 0, stream>>>(p, p.delta ? scratch : nullptr);
  return cudaGetLastError();
}

}  // namespace edgeinf::kernels::cuda
