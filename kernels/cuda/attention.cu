// Segment attention with online softmax: one warp per (query token, query head). Each lane walks
// the visible keys lane, lane + 32, ... keeping its own online-softmax state and accumulator
// (kernels/common/online_softmax.h); the 32 partial states then merge exactly in shared memory.
// Keys are the policy's contiguous sink (+) window (+) segment cache; query t sees keys
// j <= causal_base + t; query head h reads KV head h / (n_head / n_kv_head). One kernel per cache
// type (kv_rows.h): K and V values are decoded as they are read.
#include "kernels/common/kv_rows.h"
#include "kernels/common/online_softmax.h"
#include "kernels/cuda/ops.h"

namespace edgeinf::kernels::cuda {
namespace {

constexpr int kWarp = 32;
constexpr int kMaxHeadDim = 256;
constexpr int kWarpsPerBlock = 2;

template <WeightType T>
__global__ void attention_kernel(AttentionParams p) {
  __shared__ float acc_s[kWarpsPerBlock][kWarp][kMaxHeadDim / 4];  // reused in 4 passes of head_dim / 4
  __shared__ float max_s[kWarpsPerBlock][kWarp], sum_s[kWarpsPerBlock][kWarp];
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int64_t row = int64_t(blockIdx.x) * kWarpsPerBlock + warp;  // (t, h) pair
  const bool active = row < p.n_tok * p.n_head;
  const int64_t t = active ? row / p.n_head : 0;
  const int h = active ? int(row % p.n_head) : 0;
  const int g = h / (p.n_head / p.n_kv_head);
  const int d = p.head_dim;
  const float* q = p.q + t * p.q_stride + int64_t(h) * d;
  const int64_t n_visible = active ? min(p.n_kv, p.causal_base + t + 1) : 0;

  float acc[kMaxHeadDim];
  for (int k = 0; k < d; ++k) acc[k] = 0.0f;
  OnlineSoftmax st;
  for (int64_t j = lane; j < n_visible; j += kWarp) {
    const int64_t kv = int64_t(g) * p.kv_head_stride + j * p.kv_stride;
    float s = 0.0f;
    for (int k = 0; k < d; ++k) s += q[k] * kv_value<T>(p.k, kv + k);
    float w = 0.0f;
    const float f = online_softmax_add(st, s * p.scale, &w);
    for (int k = 0; k < d; ++k) acc[k] = acc[k] * f + w * kv_value<T>(p.v, kv + k);
  }
  max_s[warp][lane] = st.max;
  sum_s[warp][lane] = st.sum;
  __syncwarp();
  // The warp's merged state: every lane computes it from the 32 partial states.
  OnlineSoftmax total;
  for (int l = 0; l < kWarp; ++l) {
    OnlineSoftmax part;
    part.max = max_s[warp][l];
    part.sum = sum_s[warp][l];
    float fa = 0.0f, fb = 0.0f;
    online_softmax_merge(total, part, &fa, &fb);
  }
  // Output in passes of up to kMaxHeadDim / 4 dimensions through shared memory.
  const int chunk = kMaxHeadDim / 4;
  for (int base = 0; base < d; base += chunk) {
    const int n = min(chunk, d - base);
    for (int k = 0; k < n; ++k) acc_s[warp][lane][k] = acc[base + k];
    __syncwarp();
    for (int k = lane; k < n; k += kWarp) {
      float o = 0.0f;
      for (int l = 0; l < kWarp; ++l) {
        const float m = max_s[warp][l];
        if (m != -INFINITY) o += acc_s[warp][l][k] * expf(m - total.max);
      }
      if (active) p.out[t * p.out_stride + int64_t(h) * d + base + k] = online_softmax_finish(total, o);
    }
    __syncwarp();
  }
}

}  // namespace

cudaError_t attention_forward(const AttentionParams& p, cudaStream_t stream) {
  if (p.head_dim > kMaxHeadDim || p.n_kv_head <= 0 || p.n_head % p.n_kv_head != 0 || !kv_type_supported(p.kv_type) ||
      p.head_dim % kv_block_values(p.kv_type) != 0) {
    return cudaErrorInvalidValue;
  }
  const int64_t rows = p.n_tok * p.n_head;
  if (rows <= 0) return cudaSuccess;
  const unsigned blocks = unsigned((rows + kWarpsPerBlock - 1) / kWarpsPerBlock), threads = kWarpsPerBlock * kWarp;
  switch (p.kv_type) {
    case WeightType::kF16: attention_kernel<WeightType::kF16><<<blocks, threads, 0, stream>>>(p); break;
    case WeightType::kQ8_0: attention_kernel<WeightType::kQ8_0><<<blocks, threads, 0, stream>>>(p); break;
    default: attention_kernel<WeightType::kF32><<<blocks, threads, 0, stream>>>(p); break;
  }
  return cudaGetLastError();
}

}  // namespace edgeinf::kernels::cuda
