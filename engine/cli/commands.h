// The edgeinf subcommands; each returns the process exit code.
#pragma once

#include <memory>
#include <string>

#include "engine/backend/backend.h"

namespace edgeinf::cli {

int run_generate(int argc, char** argv);
int run_bench(int argc, char** argv);
int run_eval(int argc, char** argv);
int run_calibrate(int argc, char** argv);

// The model path used when -m is not given: $EDGEINF_MODEL, else the bundled model under models/.
const char* default_model_path();

// The backend for --device and a policy: nullptr for the CPU. With "auto", a policy the device
// does not run goes to the CPU; with "cuda" that is an error.
StatusOr<std::unique_ptr<ModelBackend>> open_device(const std::string& device, const LlamaModel& model,
                                                    const std::string& policy);
// "cpu", or the device's name and description.
std::string device_label(const ModelBackend* backend);

}  // namespace edgeinf::cli
