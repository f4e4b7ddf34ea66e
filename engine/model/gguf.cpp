// GGUF parsing with bounds checks on every read; see gguf.h for the contract.
#include "engine/model/gguf.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "kernels/common/quant_blocks.h"

namespace edgeinf {
namespace {

// Limits far above any real model, so hostile counts fail fast instead of allocating.
constexpr uint64_t kMaxStringBytes = uint64_t(1) << 30;
constexpr uint64_t kMaxKvCount = uint64_t(1) << 20;
constexpr uint64_t kMaxTensorCount = uint64_t(1) << 20;
constexpr int kMaxArrayDepth = 4;
constexpr uint32_t kMaxDims = 4;

// A cursor over the file bytes that fails (instead of reading past the end) on truncation.
class Reader {
 public:
  explicit Reader(std::span<const uint8_t> bytes) : bytes_(bytes) {}

  size_t pos() const { return pos_; }
  size_t remaining() const { return bytes_.size() - pos_; }

  template <typename T>
  Status read(T* out, const char* what) {
    if (remaining() < sizeof(T)) return truncated(what);
    std::memcpy(out, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return absl::OkStatus();
  }

  Status read_string(std::string* out, const char* what) {
    uint64_t n = 0;
    EDGEINF_RETURN_IF_ERROR(read(&n, what));
    if (n > kMaxStringBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("GGUF: ", what, " string length ", n, " at offset ", pos_ - 8, " is absurd"));
    }
    if (remaining() < n) return truncated(what);
    out->assign(reinterpret_cast<const char*>(bytes_.data() + pos_), size_t(n));
    pos_ += size_t(n);
    return absl::OkStatus();
  }

  Status truncated(const char* what) const {
    return absl::InvalidArgumentError(absl::StrCat("GGUF: file truncated while reading ", what, " at offset ", pos_,
                                                   " (file is ", bytes_.size(), " bytes)"));
  }

 private:
  std::span<const uint8_t> bytes_;
  size_t pos_ = 0;
};

size_t scalar_size(GgufType t) {
  switch (t) {
    case GgufType::kUint8:
    case GgufType::kInt8:
    case GgufType::kBool: return 1;
    case GgufType::kUint16:
    case GgufType::kInt16: return 2;
    case GgufType::kUint32:
    case GgufType::kInt32:
    case GgufType::kFloat32: return 4;
    case GgufType::kUint64:
    case GgufType::kInt64:
    case GgufType::kFloat64: return 8;
    case GgufType::kString:
    case GgufType::kArray: return 0;
  }
  return 0;
}

bool valid_type(uint32_t t) { return t <= uint32_t(GgufType::kFloat64); }

// Reads a T from the file and stores it, converted, in *out.
template <typename T, typename Out>
Status read_as(Reader& r, Out* out, const char* what) {
  T x{};
  EDGEINF_RETURN_IF_ERROR(r.read(&x, what));
  *out = Out(x);
  return absl::OkStatus();
}

// Reads one scalar of type t into the integer/float/string slot of v.
Status read_scalar(Reader& r, GgufType t, GgufValue* v, const char* what) {
  switch (t) {
    case GgufType::kUint8: return read_as<uint8_t>(r, &v->i, what);
    case GgufType::kInt8: return read_as<int8_t>(r, &v->i, what);
    case GgufType::kUint16: return read_as<uint16_t>(r, &v->i, what);
    case GgufType::kInt16: return read_as<int16_t>(r, &v->i, what);
    case GgufType::kUint32: return read_as<uint32_t>(r, &v->i, what);
    case GgufType::kInt32: return read_as<int32_t>(r, &v->i, what);
    case GgufType::kInt64: return read_as<int64_t>(r, &v->i, what);
    case GgufType::kFloat32: return read_as<float>(r, &v->f, what);
    case GgufType::kFloat64: return read_as<double>(r, &v->f, what);
    case GgufType::kUint64: {
      EDGEINF_RETURN_IF_ERROR(read_as<uint64_t>(r, &v->u, what));
      constexpr uint64_t kMax = uint64_t(std::numeric_limits<int64_t>::max());
      v->i = int64_t(std::min(v->u, kMax));
      return absl::OkStatus();
    }
    case GgufType::kBool: {
      EDGEINF_RETURN_IF_ERROR(read_as<uint8_t>(r, &v->i, what));
      if (v->i > 1) return absl::InvalidArgumentError(absl::StrCat("GGUF: ", what, " has bool value ", v->i));
      return absl::OkStatus();
    }
    case GgufType::kString: return r.read_string(&v->str, what);
    case GgufType::kArray: break;
  }
  return absl::InvalidArgumentError(absl::StrCat("GGUF: ", what, " has unexpected type ", uint32_t(t)));
}

Status read_value(Reader& r, GgufType t, GgufValue* v, const char* what, int depth);

Status read_array(Reader& r, GgufValue* v, const char* what, int depth) {
  if (depth >= kMaxArrayDepth) {
    return absl::InvalidArgumentError(absl::StrCat("GGUF: ", what, " nests arrays deeper than ", kMaxArrayDepth));
  }
  uint32_t et = 0;
  uint64_t n = 0;
  EDGEINF_RETURN_IF_ERROR(r.read(&et, what));
  EDGEINF_RETURN_IF_ERROR(r.read(&n, what));
  if (!valid_type(et)) {
    return absl::InvalidArgumentError(absl::StrCat("GGUF: ", what, " has unknown array element type ", et));
  }
  v->elem_type = GgufType(et);
  // Every element takes at least one byte (a string at least 8), so n cannot exceed what is left.
  const size_t min_elem = v->elem_type == GgufType::kString  ? 8
                          : v->elem_type == GgufType::kArray ? 12
                                                             : scalar_size(v->elem_type);
  if (n > r.remaining() / min_elem) {
    return absl::InvalidArgumentError(
        absl::StrCat("GGUF: ", what, " array of ", n, " elements at offset ", r.pos(), " overruns the file"));
  }
  GgufValue elem;
  switch (v->elem_type) {
    case GgufType::kString:
      v->strings.resize(size_t(n));
      for (auto& s : v->strings) EDGEINF_RETURN_IF_ERROR(r.read_string(&s, what));
      return absl::OkStatus();
    case GgufType::kFloat32:
    case GgufType::kFloat64:
      v->floats.reserve(size_t(n));
      for (uint64_t k = 0; k < n; ++k) {
        EDGEINF_RETURN_IF_ERROR(read_scalar(r, v->elem_type, &elem, what));
        v->floats.push_back(elem.f);
      }
      return absl::OkStatus();
    case GgufType::kArray:
      v->items.resize(size_t(n));
      for (auto& item : v->items) {
        item.type = GgufType::kArray;
        EDGEINF_RETURN_IF_ERROR(read_array(r, &item, what, depth + 1));
      }
      return absl::OkStatus();
    default:
      v->ints.reserve(size_t(n));
      for (uint64_t k = 0; k < n; ++k) {
        EDGEINF_RETURN_IF_ERROR(read_scalar(r, v->elem_type, &elem, what));
        v->ints.push_back(elem.i);
      }
      return absl::OkStatus();
  }
}

Status read_value(Reader& r, GgufType t, GgufValue* v, const char* what, int depth) {
  v->type = t;
  if (t == GgufType::kArray) return read_array(r, v, what, depth);
  return read_scalar(r, t, v, what);
}

Status bad_key(std::string_view key, const char* want, const GgufValue& v) {
  return absl::InvalidArgumentError(absl::StrCat("GGUF: metadata key '", std::string(key), "' has type ",
                                                 gguf_type_name(v.type), ", expected ", want));
}

Status missing_key(std::string_view key) {
  return absl::NotFoundError(absl::StrCat("GGUF: missing metadata key '", std::string(key), "'"));
}

}  // namespace

const char* gguf_type_name(GgufType type) {
  switch (type) {
    case GgufType::kUint8: return "uint8";
    case GgufType::kInt8: return "int8";
    case GgufType::kUint16: return "uint16";
    case GgufType::kInt16: return "int16";
    case GgufType::kUint32: return "uint32";
    case GgufType::kInt32: return "int32";
    case GgufType::kFloat32: return "float32";
    case GgufType::kBool: return "bool";
    case GgufType::kString: return "string";
    case GgufType::kArray: return "array";
    case GgufType::kUint64: return "uint64";
    case GgufType::kInt64: return "int64";
    case GgufType::kFloat64: return "float64";
  }
  return "unknown";
}

bool GgufValue::is_integer() const { return !is_float() && type != GgufType::kString && type != GgufType::kArray; }

size_t GgufValue::array_size() const { return ints.size() + floats.size() + strings.size() + items.size(); }

StatusOr<std::unique_ptr<GgufFile>> GgufFile::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::NotFoundError(absl::StrCat("cannot open model file '", path, "': ", std::strerror(errno)));
  }
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat("'", path, "' is not a regular file"));
  }
  std::unique_ptr<GgufFile> file(new GgufFile());
  file->path_ = path;
  const size_t size = size_t(st.st_size);
  if (size > 0) {
    void* addr = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (addr == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      return absl::InternalError(absl::StrCat("cannot map '", path, "': ", std::strerror(err)));
    }
    file->map_addr_ = addr;
    file->map_size_ = size;
    file->bytes_ = std::span<const uint8_t>(static_cast<const uint8_t*>(addr), size);
  }
  ::close(fd);
  Status s = file->parse_all();
  if (!s.ok()) return Status(s.code(), absl::StrCat(path, ": ", s.message()));
  return file;
}

StatusOr<std::unique_ptr<GgufFile>> GgufFile::parse(std::span<const uint8_t> bytes) {
  std::unique_ptr<GgufFile> file(new GgufFile());
  file->bytes_ = bytes;
  EDGEINF_RETURN_IF_ERROR(file->parse_all());
  return file;
}

GgufFile::~GgufFile() {
  if (map_addr_ != nullptr) munmap(map_addr_, map_size_);
}

Status GgufFile::parse_all() {
  Reader r(bytes_);
  char magic[4];
  if (bytes_.size() < 4) return absl::InvalidArgumentError("GGUF: file is too short to hold a header");
  EDGEINF_RETURN_IF_ERROR(r.read(&magic, "magic"));
  if (std::memcmp(magic, "GGUF", 4) != 0) {
    return absl::InvalidArgumentError("GGUF: bad magic (not a GGUF file)");
  }
  EDGEINF_RETURN_IF_ERROR(r.read(&version_, "version"));
  if (version_ != 2 && version_ != 3) {
    return absl::InvalidArgumentError(absl::StrCat("GGUF: unsupported version ", version_, " (2 and 3 are supported)"));
  }
  uint64_t n_tensors = 0, n_kv = 0;
  EDGEINF_RETURN_IF_ERROR(r.read(&n_tensors, "tensor count"));
  EDGEINF_RETURN_IF_ERROR(r.read(&n_kv, "metadata count"));
  if (n_tensors > kMaxTensorCount)
    return absl::InvalidArgumentError(absl::StrCat("GGUF: absurd tensor count ", n_tensors));
  if (n_kv > kMaxKvCount) return absl::InvalidArgumentError(absl::StrCat("GGUF: absurd metadata count ", n_kv));

  absl::flat_hash_set<std::string> keys;
  kvs_.reserve(size_t(n_kv));
  for (uint64_t k = 0; k < n_kv; ++k) {
    GgufKv kv;
    EDGEINF_RETURN_IF_ERROR(r.read_string(&kv.key, "metadata key"));
    uint32_t t = 0;
    EDGEINF_RETURN_IF_ERROR(r.read(&t, "metadata type"));
    if (!valid_type(t)) {
      return absl::InvalidArgumentError(absl::StrCat("GGUF: metadata key '", kv.key, "' has unknown type ", t));
    }
    const std::string what = absl::StrCat("metadata '", kv.key, "'");
    EDGEINF_RETURN_IF_ERROR(read_value(r, GgufType(t), &kv.value, what.c_str(), 0));
    if (!keys.insert(kv.key).second) {
      return absl::InvalidArgumentError(absl::StrCat("GGUF: duplicate metadata key '", kv.key, "'"));
    }
    kvs_.push_back(std::move(kv));
  }

  if (const GgufValue* a = find("general.alignment")) {
    if (!a->is_integer() || a->i <= 0 || a->i > 65536 || (a->i & (a->i - 1)) != 0) {
      return absl::InvalidArgumentError("GGUF: general.alignment must be a power of two integer up to 65536");
    }
    alignment_ = uint32_t(a->i);
  }

  absl::flat_hash_set<std::string> names;
  tensors_.reserve(size_t(n_tensors));
  for (uint64_t k = 0; k < n_tensors; ++k) {
    GgufTensorInfo info;
    EDGEINF_RETURN_IF_ERROR(r.read_string(&info.name, "tensor name"));
    EDGEINF_RETURN_IF_ERROR(r.read(&info.n_dims, "tensor dimension count"));
    if (info.n_dims == 0 || info.n_dims > kMaxDims) {
      return absl::InvalidArgumentError(
          absl::StrCat("GGUF: tensor '", info.name, "' has ", info.n_dims, " dimensions"));
    }
    for (uint32_t d = 0; d < info.n_dims; ++d) {
      EDGEINF_RETURN_IF_ERROR(r.read(&info.ne[d], "tensor shape"));
      if (info.ne[d] <= 0 || info.ne[d] > (int64_t(1) << 40)) {
        return absl::InvalidArgumentError(
            absl::StrCat("GGUF: tensor '", info.name, "' has dimension ", d, " = ", info.ne[d]));
      }
    }
    EDGEINF_RETURN_IF_ERROR(r.read(&info.type, "tensor type"));
    EDGEINF_RETURN_IF_ERROR(r.read(&info.offset, "tensor offset"));
    const kernels::WeightTypeTraits* tr = kernels::weight_type_traits(info.type);
    if (tr == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("GGUF: tensor '", info.name, "' has unsupported type id ",
                                                     info.type,
                                                     " (supported: F32, F16, BF16, Q4_0, Q4_1, Q8_0, Q4_K, Q6_K)"));
    }
    if (info.ne[0] % tr->block_elems != 0) {
      return absl::InvalidArgumentError(absl::StrCat("GGUF: tensor '", info.name, "' row of ", info.ne[0],
                                                     " elements is not a multiple of the ", tr->name, " block size ",
                                                     tr->block_elems));
    }
    // Element and byte counts with overflow checks: a hostile shape must not wrap around.
    uint64_t elems = 1;
    bool overflow = false;
    for (uint32_t d = 0; d < info.n_dims; ++d) overflow |= __builtin_mul_overflow(elems, uint64_t(info.ne[d]), &elems);
    uint64_t bytes = 0;
    overflow |= __builtin_mul_overflow(elems / uint64_t(tr->block_elems), uint64_t(tr->block_bytes), &bytes);
    if (overflow || bytes > bytes_.size()) {
      return absl::InvalidArgumentError(absl::StrCat("GGUF: tensor '", info.name, "' is larger than the file"));
    }
    info.n_bytes = bytes;
    if (info.offset % alignment_ != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("GGUF: tensor '", info.name, "' offset ", info.offset, " is not aligned to ", alignment_));
    }
    if (!names.insert(info.name).second) {
      return absl::InvalidArgumentError(absl::StrCat("GGUF: duplicate tensor name '", info.name, "'"));
    }
    tensors_.push_back(std::move(info));
  }

  // The data section starts at the next multiple of the alignment.
  const size_t data_start = (r.pos() + alignment_ - 1) / alignment_ * alignment_;
  if (data_start > bytes_.size() && !tensors_.empty()) {
    return absl::InvalidArgumentError("GGUF: file truncated before the tensor data section");
  }
  data_ = bytes_.data() + std::min(data_start, bytes_.size());
  const uint64_t data_size = bytes_.size() > data_start ? bytes_.size() - data_start : 0;

  // Every tensor must lie inside the data section, and no two may overlap.
  std::vector<std::pair<uint64_t, uint64_t>> spans;
  spans.reserve(tensors_.size());
  for (const GgufTensorInfo& t : tensors_) {
    if (t.offset > data_size || t.n_bytes > data_size - t.offset) {
      return absl::InvalidArgumentError(absl::StrCat("GGUF: tensor '", t.name, "' data [", t.offset, ", ",
                                                     t.offset + t.n_bytes, ") lies outside the data section of ",
                                                     data_size, " bytes (file truncated?)"));
    }
    spans.emplace_back(t.offset, t.offset + t.n_bytes);
  }
  std::sort(spans.begin(), spans.end());
  for (size_t k = 1; k < spans.size(); ++k) {
    if (spans[k].first < spans[k - 1].second) {
      return absl::InvalidArgumentError(absl::StrCat("GGUF: tensor data overlaps at offset ", spans[k].first));
    }
  }
  return absl::OkStatus();
}

std::string GgufFile::fingerprint() const {
  // FNV-1a over everything before the tensor data, then 64 bytes of every MiB of the data.
  uint64_t h = 0xcbf29ce484222325ull;
  auto mix = [&h](const uint8_t* p, size_t n) {
    for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  };
  const size_t header = size_t(data_ - bytes_.data());
  mix(bytes_.data(), header);
  for (size_t off = header; off < bytes_.size(); off += size_t(1) << 20) {
    mix(bytes_.data() + off, std::min<size_t>(64, bytes_.size() - off));
  }
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  return hex;
}

const GgufValue* GgufFile::find(std::string_view key) const {
  for (const GgufKv& kv : kvs_) {
    if (kv.key == key) return &kv.value;
  }
  return nullptr;
}

const GgufTensorInfo* GgufFile::find_tensor(std::string_view name) const {
  for (const GgufTensorInfo& t : tensors_) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

StatusOr<std::string> GgufFile::get_string(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return missing_key(key);
  if (v->type != GgufType::kString) return bad_key(key, "string", *v);
  return v->str;
}

StatusOr<int64_t> GgufFile::get_int(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return missing_key(key);
  if (!v->is_integer()) return bad_key(key, "integer", *v);
  return v->i;
}

StatusOr<double> GgufFile::get_float(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return missing_key(key);
  if (v->is_float()) return v->f;
  if (v->is_integer()) return double(v->i);
  return bad_key(key, "number", *v);
}

StatusOr<bool> GgufFile::get_bool(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return missing_key(key);
  if (!v->is_integer()) return bad_key(key, "bool", *v);
  return v->i != 0;
}

StatusOr<const std::vector<std::string>*> GgufFile::get_string_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return missing_key(key);
  if (!v->is_array() || v->elem_type != GgufType::kString) return bad_key(key, "array of string", *v);
  return &v->strings;
}

StatusOr<const std::vector<double>*> GgufFile::get_float_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return missing_key(key);
  if (!v->is_array() || (v->elem_type != GgufType::kFloat32 && v->elem_type != GgufType::kFloat64)) {
    return bad_key(key, "array of float", *v);
  }
  return &v->floats;
}

StatusOr<const std::vector<int64_t>*> GgufFile::get_int_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return missing_key(key);
  if (!v->is_array() || v->elem_type == GgufType::kString || v->elem_type == GgufType::kArray ||
      v->elem_type == GgufType::kFloat32 || v->elem_type == GgufType::kFloat64) {
    return bad_key(key, "array of integer", *v);
  }
  return &v->ints;
}

int64_t GgufFile::get_int_or(std::string_view key, int64_t fallback) const {
  const GgufValue* v = find(key);
  return v != nullptr && v->is_integer() ? v->i : fallback;
}

double GgufFile::get_float_or(std::string_view key, double fallback) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return fallback;
  if (v->is_float()) return v->f;
  if (v->is_integer()) return double(v->i);
  return fallback;
}

bool GgufFile::get_bool_or(std::string_view key, bool fallback) const {
  const GgufValue* v = find(key);
  return v != nullptr && v->is_integer() ? v->i != 0 : fallback;
}

std::string GgufFile::get_string_or(std::string_view key, std::string_view fallback) const {
  const GgufValue* v = find(key);
  return v != nullptr && v->type == GgufType::kString ? v->str : std::string(fallback);
}

}  // namespace edgeinf
