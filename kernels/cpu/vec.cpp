// Picks the vector implementation once, from the CPU's reported features (EDGEINF_CPU=generic
// forces the portable one: how the tests run that path on machines that have AVX2).
#include "kernels/cpu/vec.h"

#include <cstdlib>
#include <cstring>

#if defined(__x86_64__)
#include <cpuid.h>
#endif

namespace edgeinf::kernels::cpu {

const VecOps& vec_ops_avx2();

namespace {

bool has_avx2_fma_f16c() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid(1, &eax, &ebx, &ecx, &edx) == 0) return false;
  const bool f16c = (ecx & (1u << 29)) != 0;
  return f16c && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

}  // namespace

const VecOps& vec_ops() {
  static const VecOps& ops = []() -> const VecOps& {
    const char* force = std::getenv("EDGEINF_CPU");
    if (force != nullptr && std::strcmp(force, "generic") == 0) return vec_ops_generic();
    return has_avx2_fma_f16c() ? vec_ops_avx2() : vec_ops_generic();
  }();
  return ops;
}

}  // namespace edgeinf::kernels::cpu
