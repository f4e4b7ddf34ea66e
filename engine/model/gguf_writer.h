// Builds GGUF v3 files: metadata, F32 tensors, 32-byte aligned data. Used for the memory-gate side
// file and by tests that need model-shaped files.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "engine/util/status.h"

namespace edgeinf {

class GgufWriter {
 public:
  explicit GgufWriter(uint32_t version = 3) : version_(version) {}

  void kv_u32(const std::string& key, uint32_t v) {
    kv_header(key, 4);
    put(v);
  }
  void kv_i32(const std::string& key, int32_t v) {
    kv_header(key, 5);
    put(v);
  }
  void kv_f32(const std::string& key, float v) {
    kv_header(key, 6);
    put(v);
  }
  void kv_bool(const std::string& key, bool v) {
    kv_header(key, 7);
    put(uint8_t(v));
  }
  void kv_str(const std::string& key, const std::string& v) {
    kv_header(key, 8);
    put_str(v);
  }
  void kv_u64(const std::string& key, uint64_t v) {
    kv_header(key, 10);
    put(v);
  }
  void kv_f64(const std::string& key, double v) {
    kv_header(key, 12);
    put(v);
  }
  void kv_str_array(const std::string& key, const std::vector<std::string>& v);
  void kv_f32_array(const std::string& key, const std::vector<float>& v);
  void kv_i32_array(const std::string& key, const std::vector<int32_t>& v);
  // A tensor with shape ne (ne[0] innermost), GGUF type id and raw bytes.
  void tensor(const std::string& name, std::vector<int64_t> ne, uint32_t type, std::vector<uint8_t> data);
  void tensor_f32(const std::string& name, std::vector<int64_t> ne, const std::vector<float>& values);

  // The whole file.
  std::vector<uint8_t> bytes() const;
  // Writes the file atomically: a temporary beside it, fsync, rename.
  Status write_file(const std::string& path) const;

 private:
  struct Tensor {
    std::string name;
    std::vector<int64_t> ne;
    uint32_t type;
    std::vector<uint8_t> data;
  };
  void put_bytes(const void* p, size_t n) {
    const size_t old = kv_.size();
    kv_.resize(old + n);
    if (n > 0) std::memcpy(kv_.data() + old, p, n);
  }
  template <typename T>
  void put(T v) {
    put_bytes(&v, sizeof v);
  }
  void put_str(const std::string& s) {
    put(uint64_t(s.size()));
    put_bytes(s.data(), s.size());
  }
  void kv_header(const std::string& key, uint32_t type) {
    ++n_kv_;
    put_str(key);
    put(type);
  }

  uint32_t version_;
  uint64_t n_kv_ = 0;
  std::vector<uint8_t> kv_;
  std::vector<Tensor> tensors_;
};

}  // namespace edgeinf
