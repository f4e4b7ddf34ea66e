// Where the forward pass runs. The CPU backend is LlamaContext's own path (kernels/cpu on a thread
// pool); a ModelBackend runs the whole forward pass on another device, with the model's weights and
// every context's attention state in that device's memory. The CUDA backend (engine/backend/cuda)
// is the one there is.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "engine/kv/kv_policy.h"
#include "engine/model/llama_model.h"
#include "engine/util/status.h"

namespace edgeinf {

using TokenId = int32_t;

class ModelBackend {
 public:
  virtual ~ModelBackend() = default;
  // "cuda".
  virtual const char* device() const = 0;
  // The device in one line (name, memory, peak figures).
  virtual std::string describe() const = 0;
  // Whether the KV policy of that name runs on this backend.
  virtual bool supports(const std::string& policy) const = 0;

  // A policy whose whole state (KV, compressed memory, gate) lives in the device's memory, in one
  // allocation sized from its fixed shapes. Its save/restore bytes are exactly those of the CPU
  // policy of the same name, so a session moves freely between devices. Its attend() takes device
  // pointers and is called only by this backend. InvalidArgument for an unsupported policy,
  // ResourceExhausted when the device has no room.
  virtual StatusOr<std::unique_ptr<KvPolicy>> make_policy(const KvPolicyOptions& options) = 0;

  // Runs tokens (at most the policy's max_batch) through the model over a policy this backend made,
  // and writes to the host array `logits` those of the last token ([n_vocab]) or of every token
  // ([n_tokens, n_vocab]). Internal on a device error, after which the policy is reset.
  virtual Status forward(std::span<const TokenId> tokens, KvPolicy& policy, bool all_logits, float* logits) = 0;

  // One token for each of several policies in one pass, each row with the single-token arithmetic
  // (a stream's logits do not depend on the batch); logits [n, n_vocab] on the host.
  virtual Status forward_each(std::span<KvPolicy* const> policies, std::span<const TokenId> tokens,
                              float* logits) = 0;
};

// Whether this build has the CUDA backend.
bool cuda_backend_built();

// The CUDA backend for a model: uploads its weights. Unimplemented in a build without CUDA;
// FailedPrecondition (with the driver's reason) when no device can be used.
StatusOr<std::unique_ptr<ModelBackend>> make_cuda_backend(const LlamaModel& model);

// The backend for --device: "cpu" gives nullptr (the CPU path); "cuda" gives the CUDA backend or the
// error saying why it cannot be had; "auto" gives the CUDA backend when it can be had and otherwise
// nullptr, with the reason in *note. InvalidArgument for any other name.
StatusOr<std::unique_ptr<ModelBackend>> open_backend(const std::string& device, const LlamaModel& model,
                                                     std::string* note);

// Where a context of `policy` runs: the backend when it runs that policy, or when the device was
// named ("cuda": LlamaContext::create then refuses the policy, saying why); otherwise nullptr, the
// CPU ("auto" keeps policies without a device form on the CPU).
ModelBackend* backend_for_policy(ModelBackend* backend, const std::string& device, const std::string& policy);

// "cpu", or the device's name and description ("cuda: NVIDIA H100 ...").
std::string device_label(const ModelBackend* backend);

// The help text of --device.
inline constexpr const char* kDeviceHelp =
    "where the model runs: cpu, cuda, or auto (cuda when a CUDA device can be used, else cpu)";

}  // namespace edgeinf
