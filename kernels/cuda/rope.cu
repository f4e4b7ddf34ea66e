// Rotary embedding: one thread per (token, head, rotated pair), angles from kernels/common.
#include "kernels/common/rope.h"
#include "kernels/cuda/ops.h"

namespace edgeinf::kernels::cuda {
namespace {

__global__ void rope_kernel(RopeParams p) {
  const int half = p.n_rot / 2;
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t total = p.n_tok * p.n_head * half;
  if (idx >= total) return;
  const int i = int(idx % half);
  const int h = int((idx / half) % p.n_head);
  const int64_t t = idx / (int64_t(half) * p.n_head);
  float* x = p.x + t * p.row_stride + int64_t(h) * p.head_dim;
  const float factor = p.freq_factors != nullptr ? p.freq_factors[i] : 1.0f;
  const float theta = rope_angle(p.positions[t], i, p.n_rot, p.freq_base, p.freq_scale, factor);
  const float c = cosf(theta), s = sinf(theta);
  const int a = p.neox ? i : 2 * i;
  const int b = p.neox ? i + half : 2 * i + 1;
  const float x0 = x[a], x1 = x[b];
  x[a] = x0 * c - x1 * s;
  x[b] = x0 * s + x1 * c;
}

}  // namespace

cudaError_t rope_forward(const RopeParams& p, cudaStream_t stream) {
  const int64_t total = p.n_tok * p.n_head * (p.n_rot / 2);
  if (total <= 0) return cudaSuccess;
  constexpr int kThreads = 256;
  rope_kernel<<<unsigned((total + kThreads - 1) / kThreads), kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace edgeinf::kernels::cuda
