// --device for the subcommands.
#include "absl/strings/str_cat.h"
#include "engine/cli/commands.h"

namespace edgeinf::cli {

StatusOr<std::unique_ptr<ModelBackend>> open_device(const std::string& device, const LlamaModel& model,
                                                    const std::string& policy) {
  EDGEINF_ASSIGN_OR_RETURN(std::unique_ptr<ModelBackend> backend, open_backend(device, model, nullptr));
  if (backend == nullptr || backend->supports(policy)) return backend;
  if (device == "auto") return std::unique_ptr<ModelBackend>();
  return absl::InvalidArgumentError(
      absl::StrCat("the ", policy, " policy does not run on ", backend->device(), " (use --device cpu or auto)"));
}

std::string device_label(const ModelBackend* backend) {
  return backend == nullptr ? "cpu" : absl::StrCat(backend->device(), " (", backend->describe(), ")");
}

}  // namespace edgeinf::cli
