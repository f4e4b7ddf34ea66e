// KV cache rows between f32 and a cache type (kernels/common/kv_rows.h) on the device: one thread
// per block of the type to encode (32 values for q8, one value otherwise), one per value to decode.
#include "kernels/common/kv_rows.h"
#include "kernels/cuda/ops.h"

namespace edgeinf::kernels::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void encode_kernel(WeightType type, const float* x, char* dst, int64_t n_units, int block) {
  const int64_t u = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (u >= n_units) return;
  encode_kv_values(type, x + u * block, dst + kv_value_offset(type, u * block), block);
}

template <WeightType T>
__global__ void decode_kernel(const void* src, float* y, int64_t n) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) y[i] = kv_value<T>(src, i);
}

unsigned blocks_for(int64_t n) { return unsigned((n + kThreads - 1) / kThreads); }

}  // namespace

cudaError_t kv_encode(WeightType type, const float* x, void* dst, int64_t n, cudaStream_t stream) {
  if (!kv_type_supported(type) || n % kv_block_values(type) != 0) return cudaErrorInvalidValue;
  const int block = kv_block_values(type);
  const int64_t units = n / block;
  if (units <= 0) return cudaSuccess;
  encode_kernel<<<blocks_for(units), kThreads, 0, stream>>>(type, x, static_cast<char*>(dst), units, block);
  return cudaGetLastError();
}

cudaError_t kv_decode(WeightType type, const void* src, float* y, int64_t n, cudaStream_t stream) {
  if (!kv_type_supported(type) || n % kv_block_values(type) != 0) return cudaErrorInvalidValue;
  if (n <= 0) return cudaSuccess;
  switch (type) {
    case WeightType::kF16: decode_kernel<WeightType::kF16><<<blocks_for(n), kThreads, 0, stream>>>(src, y, n); break;
    case WeightType::kQ8_0: decode_kernel<WeightType::kQ8_0><<<blocks_for(n), kThreads, 0, stream>>>(src, y, n); break;
    default: decode_kernel<WeightType::kF32><<<blocks_for(n), kThreads, 0, stream>>>(src, y, n); break;
  }
  return cudaGetLastError();
}

}  // namespace edgeinf::kernels::cuda
