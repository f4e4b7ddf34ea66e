// Dequantising GEMV for decode (few tokens): one warp per output row; lanes stride along the
// row, decoding each weight with kernels/common/dequant_block.h, and reduce with shuffles.
// Weights are read once for all tokens of the call (up to kMaxTokens).
#include "kernels/common/dequant_block.h"
#include "kernels/cuda/ops.h"

namespace edgeinf::kernels::cuda {
namespace {

constexpr int kWarp = 32;
constexpr int kRowsPerBlock = 4;
constexpr int kMaxTokens = 8;

__global__ void gemv_kernel(MatmulParams p) {
  const int lane = threadIdx.x % kWarp;
  const int64_t r = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
  if (r >= p.n_out) return;
  const void* w = static_cast<const uint8_t*>(p.w) + r * p.w_row_bytes;
  float sum[kMaxTokens];
  for (int t = 0; t < kMaxTokens; ++t) sum[t] = 0.0f;
  for (int64_t i = lane; i < p.n_in; i += kWarp) {
    const float wi = weight_value(p.w_type, w, i);
    for (int t = 0; t < p.n_tok; ++t) sum[t] += wi * p.x[t * p.x_stride + i];
  }
  for (int t = 0; t < p.n_tok; ++t) {
    float s = sum[t];
    for (int off = kWarp / 2; off > 0; off /= 2) s += __shfl_down_sync(0xffffffffu, s, off);
    if (lane == 0) p.y[t * p.y_stride + r] = s + (p.bias != nullptr ? p.bias[r] : 0.0f);
  }
}

}  // namespace

cudaError_t gemv_forward(const MatmulParams& p, cudaStream_t stream) {
  if (p.n_tok <= 0 || p.n_out <= 0) return cudaSuccess;
  if (p.n_tok > kMaxTokens) return cudaErrorInvalidValue;
  gemv_kernel<<<unsigned((p.n_out + kRowsPerBlock - 1) / kRowsPerBlock), kRowsPerBlock * kWarp, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace edgeinf::kernels::cuda
