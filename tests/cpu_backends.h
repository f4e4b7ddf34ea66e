// The CPU backends a test runs its contexts on: one per model over the test's thread pool, alive
// as long as this object (declare it after the pool and before the contexts).
#pragma once

#include <memory>
#include <utility>
#include <vector>

#include "engine/backend/backend.h"

namespace edgeinf::testing {

class CpuBackends {
 public:
  explicit CpuBackends(kernels::cpu::ThreadPool& pool) : pool_(pool) {}
  ModelBackend& operator()(const LlamaModel& model) {
    for (auto& [m, backend] : backends_) {
      if (m == &model) return *backend;
    }
    backends_.emplace_back(&model, make_cpu_backend(model, pool_));
    return *backends_.back().second;
  }

 private:
  kernels::cpu::ThreadPool& pool_;
  std::vector<std::pair<const LlamaModel*, std::unique_ptr<ModelBackend>>> backends_;
};

}  // namespace edgeinf::testing
