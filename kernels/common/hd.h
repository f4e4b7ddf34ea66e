// EDGEINF_HD marks small inline math shared by host code and CUDA device code.
#pragma once

#if defined(__CUDACC__)
#define EDGEINF_HD __host__ __device__ __forceinline__
#else
#define EDGEINF_HD inline
#endif
