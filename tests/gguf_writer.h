// Builds GGUF files in memory for tests: valid ones, and broken ones by editing the bytes.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace edgeinf::testing {

class GgufWriter {
 public:
  explicit GgufWriter(uint32_t version = 3) : version_(version) {}

  void kv_u32(const std::string& key, uint32_t v) { kv_header(key, 4); put(v); }
  void kv_i32(const std::string& key, int32_t v) { kv_header(key, 5); put(v); }
  void kv_f32(const std::string& key, float v) { kv_header(key, 6); put(v); }
  void kv_bool(const std::string& key, bool v) { kv_header(key, 7); put(uint8_t(v)); }
  void kv_str(const std::string& key, const std::string& v) { kv_header(key, 8); put_str(v); }
  void kv_u64(const std::string& key, uint64_t v) { kv_header(key, 10); put(v); }
  void kv_f64(const std::string& key, double v) { kv_header(key, 12); put(v); }
  void kv_str_array(const std::string& key, const std::vector<std::string>& v) {
    kv_header(key, 9);
    put(uint32_t(8));
    put(uint64_t(v.size()));
    for (const auto& s : v) put_str(s);
  }
  void kv_f32_array(const std::string& key, const std::vector<float>& v) {
    kv_header(key, 9);
    put(uint32_t(6));
    put(uint64_t(v.size()));
    for (float f : v) put(f);
  }
  void kv_i32_array(const std::string& key, const std::vector<int32_t>& v) {
    kv_header(key, 9);
    put(uint32_t(5));
    put(uint64_t(v.size()));
    for (int32_t x : v) put(x);
  }
  // A tensor with the given shape (ne[0] innermost), type id and raw data.
  void tensor(const std::string& name, std::vector<int64_t> ne, uint32_t type, std::vector<uint8_t> data) {
    tensors_.push_back({name, std::move(ne), type, std::move(data)});
  }

  // Serialises header, metadata, tensor infos and 32-byte aligned data.
  std::vector<uint8_t> bytes() const {
    std::vector<uint8_t> out;
    auto put_raw = [&](const void* p, size_t n) {
      out.insert(out.end(), static_cast<const uint8_t*>(p), static_cast<const uint8_t*>(p) + n);
    };
    put_raw("GGUF", 4);
    put_raw(&version_, 4);
    const uint64_t n_t = tensors_.size();
    put_raw(&n_t, 8);
    put_raw(&n_kv_, 8);
    out.insert(out.end(), kv_.begin(), kv_.end());
    uint64_t offset = 0;
    for (const Tensor& t : tensors_) {
      const uint64_t len = t.name.size();
      put_raw(&len, 8);
      put_raw(t.name.data(), t.name.size());
      const uint32_t n_dims = uint32_t(t.ne.size());
      put_raw(&n_dims, 4);
      for (int64_t d : t.ne) put_raw(&d, 8);
      put_raw(&t.type, 4);
      put_raw(&offset, 8);
      offset += (t.data.size() + 31) / 32 * 32;
    }
    out.resize((out.size() + 31) / 32 * 32, 0);
    for (const Tensor& t : tensors_) {
      out.insert(out.end(), t.data.begin(), t.data.end());
      out.resize((out.size() + 31) / 32 * 32, 0);
    }
    return out;
  }

 private:
  struct Tensor {
    std::string name;
    std::vector<int64_t> ne;
    uint32_t type;
    std::vector<uint8_t> data;
  };
  template <typename T>
  void put(T v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    kv_.insert(kv_.end(), p, p + sizeof v);
  }
  void put_str(const std::string& s) {
    put(uint64_t(s.size()));
    kv_.insert(kv_.end(), s.begin(), s.end());
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

}  // namespace edgeinf::testing
