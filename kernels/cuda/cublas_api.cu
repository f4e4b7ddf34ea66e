// Loading cuBLAS with dlopen; see cublas_api.h.
#include <dlfcn.h>

#include <mutex>

#include "kernels/cuda/cublas_api.h"

namespace edgeinf::kernels::cuda {
namespace {

#define EDGEINF_STR_(x) #x
#define EDGEINF_STR(x) EDGEINF_STR_(x)

struct Loaded {
  CublasApi api{};
  bool ok = false;
  std::string why;
};

template <typename F>
bool bind(void* lib, const char* name, F* out, std::string* why) {
  *out = reinterpret_cast<F>(dlsym(lib, name));
  if (*out == nullptr) *why = std::string("cuBLAS has no ") + name;
  return *out != nullptr;
}

Loaded load() {
  Loaded l;
  // The library of the cuBLAS major version we were built against, by soname, then the toolkit's.
  const char* names[] = {
      "libcublas.so." EDGEINF_STR(CUBLAS_VER_MAJOR),
      "libcublas.so",
#ifdef EDGEINF_CUDA_LIBRARY_DIR
      EDGEINF_CUDA_LIBRARY_DIR "/libcublas.so." EDGEINF_STR(CUBLAS_VER_MAJOR),
#endif
  };
  void* lib = nullptr;
  for (const char* name : names) {
    lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (lib != nullptr) break;
  }
  if (lib == nullptr) {
    const char* err = dlerror();
    l.why = std::string("cannot load cuBLAS (libcublas.so." EDGEINF_STR(CUBLAS_VER_MAJOR) "): ") +
            (err != nullptr ? err : "not found");
    return l;
  }
  l.ok = bind(lib, "cublasCreate_v2", &l.api.create, &l.why) && bind(lib, "cublasDestroy_v2", &l.api.destroy, &l.why) &&
         bind(lib, "cublasSetStream_v2", &l.api.set_stream, &l.why) &&
         bind(lib, "cublasSetMathMode", &l.api.set_math_mode, &l.why) &&
         bind(lib, "cublasSgemm_v2", &l.api.sgemm, &l.why);
  return l;
}

}  // namespace

const CublasApi* cublas_api(std::string* why) {
  static const Loaded loaded = load();
  if (!loaded.ok && why != nullptr) *why = loaded.why;
  return loaded.ok ? &loaded.api : nullptr;
}

}  // namespace edgeinf::kernels::cuda
