// GGUF v2/v3 reader over a read-only memory map: metadata, tensor infos and tensor data views.
// Every malformed file is reported as an InvalidArgument status naming the offending field.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/util/status.h"

namespace edgeinf {

// Metadata value types, numbered as in the GGUF specification.
enum class GgufType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};

const char* gguf_type_name(GgufType type);

// One metadata value. Scalars fill exactly one of `i` (signed and unsigned integers, bool), `f`
// (floats) or `str`; arrays fill `elem_type` and one of `ints`, `floats`, `strings` or `items`
// (arrays of arrays). Unsigned 64-bit values above INT64_MAX are kept in `u`.
struct GgufValue {
  GgufType type = GgufType::kUint8;
  GgufType elem_type = GgufType::kUint8;
  int64_t i = 0;
  uint64_t u = 0;
  double f = 0.0;
  std::string str;
  std::vector<int64_t> ints;
  std::vector<double> floats;
  std::vector<std::string> strings;
  std::vector<GgufValue> items;

  bool is_array() const { return type == GgufType::kArray; }
  bool is_integer() const;  // any integer type or bool
  bool is_float() const { return type == GgufType::kFloat32 || type == GgufType::kFloat64; }
  size_t array_size() const;
};

struct GgufKv {
  std::string key;
  GgufValue value;
};

// A tensor as described by the file: shape ne[0] (innermost, contiguous) .. ne[n_dims-1].
struct GgufTensorInfo {
  std::string name;
  uint32_t n_dims = 0;
  int64_t ne[4] = {1, 1, 1, 1};
  uint32_t type = 0;     // kernels::WeightType id
  uint64_t offset = 0;   // relative to the start of the data section
  uint64_t n_bytes = 0;  // derived from type and shape
  int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
};

class GgufFile {
 public:
  // Maps and parses a file. Fails on any structural problem; nothing is read lazily later.
  static StatusOr<std::unique_ptr<GgufFile>> open(const std::string& path);
  // Parses bytes owned by the caller, who keeps them alive as long as the GgufFile.
  static StatusOr<std::unique_ptr<GgufFile>> parse(std::span<const uint8_t> bytes);

  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  const std::string& path() const { return path_; }

  // A 64-bit digest (16 hex digits) of the header, metadata, tensor table and a sample of the
  // tensor data: identifies the model a side file or snapshot was made for.
  std::string fingerprint() const;

  const std::vector<GgufKv>& metadata() const { return kvs_; }
  const GgufValue* find(std::string_view key) const;  // nullptr when absent

  // Typed getters: NotFound when absent, InvalidArgument when the type does not fit.
  StatusOr<std::string> get_string(std::string_view key) const;
  StatusOr<int64_t> get_int(std::string_view key) const;   // any integer type
  StatusOr<double> get_float(std::string_view key) const;  // floats or integers
  StatusOr<bool> get_bool(std::string_view key) const;
  StatusOr<const std::vector<std::string>*> get_string_array(std::string_view key) const;
  StatusOr<const std::vector<double>*> get_float_array(std::string_view key) const;
  StatusOr<const std::vector<int64_t>*> get_int_array(std::string_view key) const;

  // Defaulting getters for optional metadata with a known fallback.
  int64_t get_int_or(std::string_view key, int64_t fallback) const;
  double get_float_or(std::string_view key, double fallback) const;
  bool get_bool_or(std::string_view key, bool fallback) const;
  std::string get_string_or(std::string_view key, std::string_view fallback) const;

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(std::string_view name) const;  // nullptr when absent
  // Start of a tensor's bytes inside the mapping (valid for the GgufFile's lifetime).
  const uint8_t* tensor_data(const GgufTensorInfo& info) const { return data_ + info.offset; }

 private:
  GgufFile() = default;
  Status parse_all();

  std::string path_;
  void* map_addr_ = nullptr;  // owned mapping, when opened from a path
  size_t map_size_ = 0;
  std::span<const uint8_t> bytes_;
  const uint8_t* data_ = nullptr;
  uint32_t version_ = 0;
  uint32_t alignment_ = 32;
  std::vector<GgufKv> kvs_;
  std::vector<GgufTensorInfo> tensors_;
};

}  // namespace edgeinf
