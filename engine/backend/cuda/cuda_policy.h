// KV policies whose state lives on the device: full, streaming and edgeinfinite, each the device
// twin of the CPU policy of that name (engine/kv), with the same plan, positions, folding and gate,
// and byte-for-byte the same save/restore format. Each keeps its whole state (KV per layer,
// compressed memory, gate weights, per-batch scratch) in one DeviceArena sized at creation.
#pragma once

#include <cuda_runtime.h>

#include <memory>

#include "engine/kv/kv_policy.h"

// Returns the error of a CUDA call from a function returning cudaError_t.
#define EDGEINF_CUDA_TRY(expr)        \
  do {                                \
    const cudaError_t e_ = (expr);    \
    if (e_ != cudaSuccess) return e_; \
  } while (0)

namespace edgeinf::cuda_backend {

// The status of a CUDA call; `what` names the step.
Status cuda_status(cudaError_t e, const char* what);

class CudaPolicy : public KvPolicy {
 public:
  // The layer step on device pointers (a.q, a.k, a.v, a.out), queued on the policy's stream.
  virtual cudaError_t attend_on_device(const LayerAttention& a) = 0;
  // Commits the planned batch (what end_batch does).
  virtual void commit() = 0;

  // The KvPolicy entry points the CPU path would call; the CUDA backend calls the two above.
  void attend(const LayerAttention& a, kernels::cpu::ThreadPool&) final {
    if (error_ == cudaSuccess) error_ = attend_on_device(a);
  }
  void end_batch(kernels::cpu::ThreadPool&) final { commit(); }
  // The first device error attend() met since reset.
  cudaError_t error() const { return error_; }

 protected:
  cudaError_t error_ = cudaSuccess;
};

// shape.rope_freq_factors must be a device pointer (or null); options.gate (host) is copied to the
// device. InvalidArgument for a policy without a device twin, ResourceExhausted when the device
// memory cannot hold the state.
StatusOr<std::unique_ptr<CudaPolicy>> make_cuda_policy(const KvPolicyOptions& options, const AttentionShape& shape,
                                                       cudaStream_t stream);

}  // namespace edgeinf::cuda_backend
