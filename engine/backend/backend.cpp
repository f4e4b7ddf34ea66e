// Choosing a backend by name.
#include "engine/backend/backend.h"

#include "absl/strings/str_cat.h"

namespace edgeinf {

StatusOr<std::unique_ptr<ModelBackend>> open_backend(const std::string& device, const LlamaModel& model,
                                                     std::string* note) {
  if (device == "cpu") return std::unique_ptr<ModelBackend>();
  if (device != "cuda" && device != "auto") {
    return absl::InvalidArgumentError(absl::StrCat("unknown device '", device, "' (expected cpu, cuda or auto)"));
  }
  StatusOr<std::unique_ptr<ModelBackend>> cuda = make_cuda_backend(model);
  if (cuda.ok() || device == "cuda") return cuda;
  if (note != nullptr) *note = absl::StrCat("running on the CPU: ", cuda.status().message());
  return std::unique_ptr<ModelBackend>();
}

}  // namespace edgeinf
