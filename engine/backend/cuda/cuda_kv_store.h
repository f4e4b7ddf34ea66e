// The CUDA backend's KV store (engine/kv/kv_store.h): a session's arrays (K/V per layer, the
// compressed memory, the gate's parameters, a batch's scratch) in one DeviceArena sized at
// creation, each operation a kernels::cuda call queued on the backend's stream. The policies that
// plan on it are the CPU's own (engine/kv).
#pragma once

#include <cuda_runtime.h>

#include <memory>

#include "engine/kv/kv_store.h"

// Returns the error of a CUDA call from a function returning cudaError_t.
#define EDGEINF_CUDA_TRY(expr)        \
  do {                                \
    const cudaError_t e_ = (expr);    \
    if (e_ != cudaSuccess) return e_; \
  } while (0)

namespace edgeinf::cuda_backend {

// The status of a CUDA call; `what` names the step.
Status cuda_status(cudaError_t e, const char* what);

// s.rope_freq_factors must be a device pointer (or null); shape.gate (host) is copied to the
// device. ResourceExhausted when the device memory cannot hold the store.
StatusOr<std::unique_ptr<KvStore>> make_cuda_kv_store(const AttentionShape& s, const KvStoreShape& shape,
                                                      cudaStream_t stream);

}  // namespace edgeinf::cuda_backend
