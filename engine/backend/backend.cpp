// Choosing the backends by --device.
#include "engine/backend/backend.h"

#include "absl/strings/str_cat.h"

namespace edgeinf {

StatusOr<Backends> open_backends(const std::string& device, const LlamaModel& model, kernels::cpu::ThreadPool& pool) {
  if (device != "cpu" && device != "cuda" && device != "auto") {
    return absl::InvalidArgumentError(absl::StrCat("unknown device '", device, "' (expected cpu, cuda or auto)"));
  }
  Backends b;
  b.requested = device;
  b.cpu = make_cpu_backend(model, pool);
  if (device == "cpu") return b;
  StatusOr<std::unique_ptr<ModelBackend>> cuda = make_cuda_backend(model);
  if (cuda.ok()) {
    b.device = std::move(*cuda);
  } else if (device == "cuda") {
    return cuda.status();
  } else {
    b.note = absl::StrCat("running on the CPU: ", cuda.status().message());
  }
  return b;
}

ModelBackend& Backends::for_policy(const std::string& policy) const {
  return device != nullptr && (device->supports(policy) || requested != "auto") ? *device : *cpu;
}

std::string Backends::label() const { return device_label(device != nullptr ? *device : *cpu); }

Status Backends::failure() const {
  if (device != nullptr) EDGEINF_RETURN_IF_ERROR(device->failure());
  return cpu->failure();
}

std::string device_label(const ModelBackend& backend) {
  const std::string name = backend.device();
  return name == "cpu" ? name : absl::StrCat(name, ": ", backend.describe());
}

}  // namespace edgeinf
