// Where sessions live between turns. A session is a chain of versioned records under one key: a
// full snapshot at some version and the deltas after it (each a snapshot record too; see
// snapshot.h). Commits are conditional on the version they follow, so two replicas racing on a
// session never both succeed, and a full record (compaction) replaces the chain before it.
// Keys are "{tenant hash}/{session id}" strings of [A-Za-z0-9_-/] (the engine makes them).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/util/status.h"

namespace edgeinf {

// One stored version of a session.
struct StoredRecord {
  uint64_t version = 0;
  std::string bytes;
};

struct CommitRequest {
  uint64_t version = 0;     // the new version: the stored one + 1 (1 creates the key)
  bool full = false;        // a full record supersedes every older one; a delta follows them
  std::string_view record;  // the snapshot record, never empty
  std::string_view head;    // its first bytes (header and session metadata), for read_head
  std::string token;        // unique per commit: a retried commit that already landed is recognised
};

class SessionStore {
 public:
  virtual ~SessionStore() = default;
  // Writes the record as version req.version if the stored version is req.version - 1 (for
  // version 1: if the key does not exist), atomically and durably when it returns OK. Aborted,
  // writing nothing, when another writer committed first; NotFound when the key was removed;
  // Unavailable when the store cannot be reached (the commit may or may not have landed then).
  virtual Status commit(const std::string& key, const CommitRequest& req) = 0;
  // The latest full record and every later delta, in version order; nullopt when the key does
  // not exist.
  virtual StatusOr<std::optional<std::vector<StoredRecord>>> read(const std::string& key) = 0;
  // The latest version and the head of its record (its first bytes, at least its header and
  // session metadata); nullopt when the key does not exist.
  virtual StatusOr<std::optional<StoredRecord>> read_head(const std::string& key) = 0;
  // OK whether or not the key existed.
  virtual Status remove(const std::string& key) = 0;
  // Keys starting with prefix, sorted.
  virtual StatusOr<std::vector<std::string>> list(const std::string& prefix) = 0;
  // OK when the store answers (health checks).
  virtual Status ping() = 0;
  // How many copies of a record a commit or a read holds in this process at once (a client
  // library that formats a command into a buffer of its own holds two): memory accounting.
  virtual int record_copies() const { return 1; }
  virtual std::string url() const = 0;
};

// dir://PATH: a directory per key holding one file per version (temporary file, fsync, then an
// exclusive link to the version's name, so writers in several processes sharing PATH never both
// commit one version; fsync of the directory). Does not create PATH: call make_store_directory.
StatusOr<std::unique_ptr<SessionStore>> open_dir_store(const std::string& path);
// mkdir -p PATH (mode 0700); InvalidArgument when it exists and is not a directory.
Status make_store_directory(const std::string& path);

}  // namespace edgeinf
