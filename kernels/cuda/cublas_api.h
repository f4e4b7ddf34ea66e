// cuBLAS, opened at run time the first time a GEMM needs it rather than linked: a linked cuBLAS
// (its cublasLt) puts ~94 KB of static thread-local storage into every thread of the process, so
// libraries that start threads with small fixed stacks (the metrics endpoint's HTTP server) can no
// longer start them. Opened with dlopen, its thread-local storage is allocated on first use instead.
#pragma once

#include <cublas_v2.h>

#include <string>

namespace edgeinf::kernels::cuda {

struct CublasApi {
  cublasStatus_t (*create)(cublasHandle_t*);
  cublasStatus_t (*destroy)(cublasHandle_t);
  cublasStatus_t (*set_stream)(cublasHandle_t, cudaStream_t);
  cublasStatus_t (*set_math_mode)(cublasHandle_t, cublasMath_t);
  cublasStatus_t (*sgemm)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int, const float*,
                          const float*, int, const float*, int, const float*, float*, int);
};

// The cuBLAS entry points, loaded once (thread-safe); nullptr with the reason in *why when the
// library or one of its functions cannot be found.
const CublasApi* cublas_api(std::string* why);

}  // namespace edgeinf::kernels::cuda
