#include <cuda_runtime.h>

#include "kernels/cuda/arena.h"

namespace edgeinf::kernels::cuda {

DeviceArena::~DeviceArena() {
  if (base_ != nullptr) cudaFree(base_);
}

bool DeviceArena::reserve(size_t bytes, std::string* why) {
  if (base_ != nullptr) cudaFree(base_);
  base_ = nullptr;
  capacity_ = used_ = 0;
  const cudaError_t e = cudaMalloc(&base_, bytes);
  if (e != cudaSuccess) {
    if (why != nullptr) *why = cudaGetErrorString(e);
    base_ = nullptr;
    return false;
  }
  capacity_ = bytes;
  return true;
}

void* DeviceArena::take_bytes(size_t bytes) {
  const size_t start = aligned(used_);
  if (base_ == nullptr || start + bytes > capacity_) return nullptr;
  used_ = start + bytes;
  return static_cast<char*>(base_) + start;
}

}  // namespace edgeinf::kernels::cuda
