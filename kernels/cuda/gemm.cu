// Prefill matrix products: the weight matrix is decoded once into a float scratch (one thread per
// element, kernels/common/dequant_block.h) and multiplied by the token block with cuBLAS.
#include "kernels/common/dequant_block.h"
#include "kernels/cuda/cublas_api.h"
#include "kernels/cuda/ops.h"

namespace edgeinf::kernels::cuda {
namespace {

__global__ void dequantize_kernel(const void* w, WeightType type, int64_t row_bytes, int64_t n_in, int64_t n_out,
                                  float* out) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= n_in * n_out) return;
  const int64_t r = idx / n_in, i = idx % n_in;
  out[idx] = weight_value(type, static_cast<const uint8_t*>(w) + r * row_bytes, i);
}

__global__ void add_bias_kernel(float* y, int64_t y_stride, const float* bias, int64_t n_tok, int64_t n_out) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= n_tok * n_out) return;
  y[(idx / n_out) * y_stride + idx % n_out] += bias[idx % n_out];
}

}  // namespace

cudaError_t dequantize_matrix(const MatmulParams& p, float* w_f32, cudaStream_t stream) {
  const int64_t total = p.n_in * p.n_out;
  if (total <= 0) return cudaSuccess;
  constexpr int kThreads = 256;
  dequantize_kernel<<<unsigned((total + kThreads - 1) / kThreads), kThreads, 0, stream>>>(p.w, p.w_type, p.w_row_bytes,
                                                                                          p.n_in, p.n_out, w_f32);
  return cudaGetLastError();
}

cudaError_t gemm_forward(const MatmulParams& p, float* w_scratch, void* cublas_handle, cudaStream_t stream) {
  if (p.n_tok <= 0 || p.n_out <= 0) return cudaSuccess;
  cudaError_t e = dequantize_matrix(p, w_scratch, stream);
  if (e != cudaSuccess) return e;
  const CublasApi* blas = cublas_api(nullptr);
  if (blas == nullptr) return cudaErrorSharedObjectInitFailed;
  auto handle = static_cast<cublasHandle_t>(cublas_handle);
  if (blas->set_stream(handle, stream) != CUBLAS_STATUS_SUCCESS) return cudaErrorUnknown;
  // Row-major y [n_tok, n_out] = x [n_tok, n_in] . W^T, i.e. column-major Y = W^T-op(A) . X.
  const float alpha = 1.0f, beta = 0.0f;
  if (blas->sgemm(handle, CUBLAS_OP_T, CUBLAS_OP_N, int(p.n_out), int(p.n_tok), int(p.n_in), &alpha, w_scratch,
                  int(p.n_in), p.x, int(p.x_stride), &beta, p.y, int(p.y_stride)) != CUBLAS_STATUS_SUCCESS) {
    return cudaErrorUnknown;
  }
  if (p.bias != nullptr) {
    const int64_t total = p.n_tok * p.n_out;
    add_bias_kernel<<<unsigned((total + 255) / 256), 256, 0, stream>>>(p.y, p.y_stride, p.bias, p.n_tok, p.n_out);
  }
  return cudaGetLastError();
}

}  // namespace edgeinf::kernels::cuda
