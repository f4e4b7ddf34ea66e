// One device allocation per session, sized from its fixed shapes up front, handed out in aligned
// pieces: steady-state work allocates nothing on the device.
#pragma once

#include <cstddef>
#include <string>

namespace edgeinf::kernels::cuda {

class DeviceArena {
 public:
  DeviceArena() = default;
  ~DeviceArena();
  DeviceArena(const DeviceArena&) = delete;
  DeviceArena& operator=(const DeviceArena&) = delete;

  // Allocates `bytes` of device memory; false (with the reason in *why) if the device refuses.
  bool reserve(size_t bytes, std::string* why);
  // The next n elements of T, 256-byte aligned; nullptr when the arena is full.
  template <typename T>
  T* take(size_t n) {
    return static_cast<T*>(take_bytes(n * sizeof(T)));
  }
  void* take_bytes(size_t bytes);
  static constexpr size_t kAlign = 256;
  static size_t aligned(size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }
  // Forgets every piece handed out (the memory stays reserved).
  void reset() { used_ = 0; }
  size_t capacity() const { return capacity_; }
  size_t used() const { return used_; }

 private:
  void* base_ = nullptr;
  size_t capacity_ = 0, used_ = 0;
};

// Runs one layout twice: first sizing (no arena: take() returns nullptr and counts), then taking the
// pieces from an arena reserved with bytes().
class ArenaLayout {
 public:
  explicit ArenaLayout(DeviceArena* arena) : arena_(arena) {}
  template <typename T>
  T* take(size_t n) {
    if (arena_ != nullptr) return arena_->take<T>(n);
    bytes_ += DeviceArena::aligned(n * sizeof(T));
    return nullptr;
  }
  size_t bytes() const { return bytes_; }

 private:
  DeviceArena* arena_;
  size_t bytes_ = 0;
};

}  // namespace edgeinf::kernels::cuda
