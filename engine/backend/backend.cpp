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

ModelBackend* backend_for_policy(ModelBackend* backend, const std::string& device, const std::string& policy) {
  return backend != nullptr && (backend->supports(policy) || device != "auto") ? backend : nullptr;
}

std::string device_label(const ModelBackend* backend) {
  return backend == nullptr ? "cpu" : absl::StrCat(backend->device(), ": ", backend->describe());
}

}  // namespace edgeinf
