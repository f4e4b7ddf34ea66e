// Where session snapshots live between turns. Keys are "{tenant}/{session id}" style strings of
// [A-Za-z0-9._-/] (the engine makes them); values are snapshot bytes, never empty (put() refuses
// an empty value). put() is atomic and durable when it returns: a reader sees the old bytes or
// the new ones, never a mix.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/util/status.h"

namespace edgeinf {

class SessionStore {
 public:
  virtual ~SessionStore() = default;
  virtual Status put(const std::string& key, const std::string& bytes) = 0;
  // nullopt when the key does not exist.
  virtual StatusOr<std::optional<std::string>> get(const std::string& key) = 0;
  // At most the first max_bytes bytes (enough for a snapshot's header and metadata sections).
  virtual StatusOr<std::optional<std::string>> get_head(const std::string& key, size_t max_bytes) = 0;
  // OK whether or not the key existed.
  virtual Status remove(const std::string& key) = 0;
  // Keys starting with prefix, sorted.
  virtual StatusOr<std::vector<std::string>> list(const std::string& prefix) = 0;
  virtual std::string url() const = 0;
};

// dir://PATH: one file per key under PATH; write to a temporary file, fsync, rename, fsync the
// directory.
StatusOr<std::unique_ptr<SessionStore>> open_dir_store(const std::string& path);

}  // namespace edgeinf
