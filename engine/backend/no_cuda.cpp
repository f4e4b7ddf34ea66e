// The CUDA backend entry points of a build without CUDA.
#include "engine/backend/backend.h"

namespace edgeinf {

bool cuda_backend_built() { return false; }

StatusOr<std::unique_ptr<ModelBackend>> make_cuda_backend(const LlamaModel&) {
  return absl::UnimplementedError("this build has no CUDA backend (no CUDA compiler was found when it was configured)");
}

}  // namespace edgeinf
