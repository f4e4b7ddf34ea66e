// Little-endian binary encoding for snapshots: a writer that appends to a string and a reader
// that checks every read against the bytes it has.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "engine/util/status.h"

namespace edgeinf {

static_assert(std::endian::native == std::endian::little, "snapshots are written little-endian");

class ByteWriter {
 public:
  explicit ByteWriter(std::string* out) : out_(out) {}
  template <typename T>
  void put(T v) {
    static_assert(std::is_trivially_copyable_v<T>);
    out_->append(reinterpret_cast<const char*>(&v), sizeof v);
  }
  template <typename T>
  void put_array(const T* p, size_t n) {
    static_assert(std::is_trivially_copyable_v<T>);
    out_->append(reinterpret_cast<const char*>(p), n * sizeof(T));
  }
  void put_string(std::string_view s) {
    put<uint32_t>(uint32_t(s.size()));
    out_->append(s.data(), s.size());
  }
  size_t size() const { return out_->size(); }
  std::string* out() { return out_; }

 private:
  std::string* out_;
};

class ByteReader {
 public:
  ByteReader(std::string_view in, std::string what) : in_(in), what_(std::move(what)) {}
  template <typename T>
  Status get(T* v) {
    static_assert(std::is_trivially_copyable_v<T>);
    EDGEINF_RETURN_IF_ERROR(need(sizeof(T)));
    std::memcpy(v, in_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return absl::OkStatus();
  }
  template <typename T>
  Status get_array(T* p, size_t n) {
    static_assert(std::is_trivially_copyable_v<T>);
    if (n > (in_.size() - pos_) / sizeof(T)) return truncated(n * sizeof(T));
    if (n == 0) return absl::OkStatus();  // p may be an empty vector's null data()
    std::memcpy(p, in_.data() + pos_, n * sizeof(T));
    pos_ += n * sizeof(T);
    return absl::OkStatus();
  }
  Status get_string(std::string* s, size_t max_len = 1 << 20) {
    uint32_t n = 0;
    EDGEINF_RETURN_IF_ERROR(get(&n));
    if (n > max_len) return absl::DataLossError(absl::StrCat(what_, ": string of ", n, " bytes is too long"));
    EDGEINF_RETURN_IF_ERROR(need(n));
    s->assign(in_.data() + pos_, n);
    pos_ += n;
    return absl::OkStatus();
  }
  // A value that must equal `want` (a shape fact), else a clear error naming it.
  template <typename T>
  Status expect(T want, const char* name) {
    T got{};
    EDGEINF_RETURN_IF_ERROR(get(&got));
    if (got != want) {
      return absl::FailedPreconditionError(absl::StrCat(what_, ": ", name, " is ", got, ", expected ", want));
    }
    return absl::OkStatus();
  }
  size_t remaining() const { return in_.size() - pos_; }
  const std::string& what() const { return what_; }

 private:
  Status need(size_t n) const { return n <= in_.size() - pos_ ? absl::OkStatus() : truncated(n); }
  Status truncated(size_t n) const {
    return absl::DataLossError(absl::StrCat(what_, ": truncated (needed ", n, " more bytes at offset ", pos_, ", ",
                                            in_.size() - pos_, " left)"));
  }
  std::string_view in_;
  size_t pos_ = 0;
  std::string what_;
};

}  // namespace edgeinf
