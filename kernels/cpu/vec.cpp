// Picks the vector implementation once, from the CPU's reported features.
#include "kernels/cpu/vec.h"

namespace edgeinf::kernels::cpu {

const VecOps& vec_ops_avx2();

const VecOps& vec_ops() {
  static const VecOps& ops = [] () -> const VecOps& {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")) {
      return vec_ops_avx2();
    }
#endif
    return vec_ops_generic();
  }();
  return ops;
}

}  // namespace edgeinf::kernels::cpu
