// GGUF serialisation and atomic file writes.
#include "engine/model/gguf_writer.h"

#include <cstring>

#include "engine/util/atomic_file.h"

namespace edgeinf {

void GgufWriter::kv_str_array(const std::string& key, const std::vector<std::string>& v) {
  kv_header(key, 9);
  put(uint32_t(8));
  put(uint64_t(v.size()));
  for (const auto& s : v) put_str(s);
}

void GgufWriter::kv_f32_array(const std::string& key, const std::vector<float>& v) {
  kv_header(key, 9);
  put(uint32_t(6));
  put(uint64_t(v.size()));
  for (float f : v) put(f);
}

void GgufWriter::kv_i32_array(const std::string& key, const std::vector<int32_t>& v) {
  kv_header(key, 9);
  put(uint32_t(5));
  put(uint64_t(v.size()));
  for (int32_t x : v) put(x);
}

void GgufWriter::tensor(const std::string& name, std::vector<int64_t> ne, uint32_t type, std::vector<uint8_t> data) {
  tensors_.push_back({name, std::move(ne), type, std::move(data)});
}

void GgufWriter::tensor_f32(const std::string& name, std::vector<int64_t> ne, const std::vector<float>& values) {
  std::vector<uint8_t> data(values.size() * sizeof(float));
  std::memcpy(data.data(), values.data(), data.size());
  tensor(name, std::move(ne), 0, std::move(data));
}

std::vector<uint8_t> GgufWriter::bytes() const {
  std::vector<uint8_t> out;
  auto put_raw = [&](const void* p, size_t n) {
    const size_t old = out.size();
    out.resize(old + n);
    if (n > 0) std::memcpy(out.data() + old, p, n);
  };
  put_raw("GGUF", 4);
  put_raw(&version_, 4);
  const uint64_t n_t = tensors_.size();
  put_raw(&n_t, 8);
  put_raw(&n_kv_, 8);
  put_raw(kv_.data(), kv_.size());
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
    put_raw(t.data.data(), t.data.size());
    out.resize((out.size() + 31) / 32 * 32, 0);
  }
  return out;
}

Status GgufWriter::write_file(const std::string& path) const {
  const std::vector<uint8_t> data = bytes();
  return write_file_atomically(path, data.data(), data.size());
}

}  // namespace edgeinf
