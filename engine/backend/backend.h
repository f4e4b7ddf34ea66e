// Where the forward pass runs. A ModelBackend runs the whole forward pass of one model on one
// device, with the policies it makes keeping their attention state in that device's memory: the CPU
// backend (engine/backend/cpu, kernels/cpu on a thread pool) always, the CUDA backend
// (engine/backend/cuda) when a device can be used.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "engine/kv/kv_policy.h"
#include "engine/model/llama_model.h"
#include "engine/util/status.h"
#include "engine/util/token_id.h"
#include "kernels/cpu/thread_pool.h"

namespace edgeinf {

class ModelBackend {
 public:
  virtual ~ModelBackend() = default;
  // "cpu" or "cuda".
  virtual const char* device() const = 0;
  // The model it runs.
  virtual const LlamaModel& model() const = 0;
  // The device in one line (name, memory, peak figures).
  virtual std::string describe() const = 0;
  // Whether the KV policy of that name runs on this backend.
  virtual bool supports(const std::string& policy) const = 0;

  // A policy whose whole state (KV, compressed memory, gate) lives in this backend's memory (on a
  // device, in one allocation sized from its fixed shapes). Its save/restore bytes are the same on
  // every backend, so a session moves freely between devices. Only this backend runs it.
  // InvalidArgument for an unknown or unsupported policy, ResourceExhausted when the device has no room.
  virtual StatusOr<std::unique_ptr<KvPolicy>> make_policy(const KvPolicyOptions& options) = 0;
  // Sizes the backend's scratch for a policy's step shape (the CPU's per-thread kernel buffers,
  // before its next pass; a device's are sized with the policy), so its steps allocate nothing.
  // LlamaContext calls it; thread-safe.
  virtual void prepare(const KvPolicy& policy) { (void)policy; }

  // Runs tokens (at most the policy's max_batch) through the model over a policy this backend made,
  // and writes to the host array `logits` those of the last token ([n_vocab]) or of every token
  // ([n_tokens, n_vocab]). OutOfRange when the policy cannot take them (unchanged then); Internal
  // on a device error, after which the policy is reset.
  virtual Status forward(std::span<const TokenId> tokens, KvPolicy& policy, bool all_logits, float* logits) = 0;

  // One token for each of several policies in one pass, each row with the single-token arithmetic
  // (a stream's logits do not depend on the batch); logits [n, n_vocab] on the host.
  virtual Status forward_each(std::span<KvPolicy* const> policies, std::span<const TokenId> tokens, float* logits) = 0;

  // OK while the backend can run passes; after an error that leaves the device unusable for the
  // rest of the process (a sticky CUDA error), that error, for good. Thread-safe.
  virtual Status failure() const { return absl::OkStatus(); }
};

// The CPU backend: kernels/cpu on the pool's threads.
std::unique_ptr<ModelBackend> make_cpu_backend(const LlamaModel& model, kernels::cpu::ThreadPool& pool);

// Whether this build has the CUDA backend.
bool cuda_backend_built();

// The CUDA backend for a model: uploads its weights. Unimplemented in a build without CUDA;
// FailedPrecondition (with the driver's reason) when no device can be used.
StatusOr<std::unique_ptr<ModelBackend>> make_cuda_backend(const LlamaModel& model);

// The backends one process runs a model on: the CPU always, and the device --device asks for.
struct Backends {
  std::unique_ptr<ModelBackend> cpu;
  std::unique_ptr<ModelBackend> device;  // nullptr: the CPU only
  std::string requested;                 // --device as given: cpu, cuda or auto
  std::string note;                      // auto without a device: why it runs on the CPU

  // Where a context of `policy` runs: the device when it runs that policy, or when the device was
  // named ("cuda": its make_policy then refuses the policy, saying why); otherwise the CPU ("auto"
  // keeps policies without a device form on the CPU).
  ModelBackend& for_policy(const std::string& policy) const;
  // The device's label when there is one, else the CPU's (see device_label).
  std::string label() const;
  // The first failure() of the backends (OK when they can all run).
  Status failure() const;
};

// "cpu", or a device's name and description ("cuda: NVIDIA H100 ...").
std::string device_label(const ModelBackend& backend);

// The backends for --device: "cpu" the CPU only; "cuda" the CUDA backend as well, or the error
// saying why it cannot be had; "auto" the CUDA backend when it can be had, else the CPU only with
// the reason in note. InvalidArgument for any other name.
StatusOr<Backends> open_backends(const std::string& device, const LlamaModel& model, kernels::cpu::ThreadPool& pool);

// The help text of --device.
inline constexpr const char* kDeviceHelp =
    "where the model runs: cpu, cuda, or auto (cuda when a CUDA device can be used, else cpu)";

}  // namespace edgeinf
