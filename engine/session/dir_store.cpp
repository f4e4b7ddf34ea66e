// The dir:// session store. Layout:
//
//   PATH/<key, '/' spelt '@'>/                 one directory per session
//       00000000000000000007                   version 7: a file header, then the record
//       .tmp.<pid>.<n>                         a record being written
//   PATH/.trash.<...>/                         a session being removed
//
// File header: "EDGEINFR", u64 version, u8 full (1) or delta (0), 7 bytes of zero. A commit writes
// a temporary file, fsyncs it and links it to the version's name: link() fails when the name
// exists, so of several processes sharing PATH exactly one commits each version, and a reader sees
// a version whole or not at all. Then the directory is fsynced. A full record makes the versions
// before it garbage; the committer removes them.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <ctime>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "engine/session/session_store.h"

namespace edgeinf {
namespace {

constexpr char kMagic[8] = {'E', 'D', 'G', 'E', 'I', 'N', 'F', 'R'};
constexpr size_t kFileHeader = 24;
constexpr size_t kHeadBytes = 64 << 10;  // read_head: enough for a record's header and metadata
constexpr int kReadAttempts = 4;         // a compaction may remove files under a reader

// A full disk (or quota) is RESOURCE_EXHAUSTED: the store answers, it has no room; anything else
// is UNAVAILABLE (the store cannot be used now).
Status errno_error(const std::string& what, const std::string& path, int e = errno) {
  if (e == ENOSPC || e == EDQUOT) {
    return absl::ResourceExhaustedError(
        absl::StrCat("session store: the disk is full: ", what, " '", path, "': ", std::strerror(e)));
  }
  return absl::UnavailableError(absl::StrCat("session store: ", what, " '", path, "': ", std::strerror(e)));
}

bool valid_key(const std::string& key) {
  if (key.empty() || key.size() > 200 || key[0] == '.') return false;
  return std::all_of(key.begin(), key.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
           c == '/';
  });
}

std::string version_name(uint64_t v) { return absl::StrFormat("%020u", v); }

bool parse_version_name(const char* name, uint64_t* v) {
  const std::string_view s(name);
  if (s.size() != 20 || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) return false;
  return absl::SimpleAtoi(absl::string_view(s.data(), s.size()), v);
}

void fsync_dir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

Status write_all(int fd, std::string_view bytes, const std::string& path) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return errno_error("cannot write", path);
    done += size_t(n);
  }
  return absl::OkStatus();
}

// Up to max_bytes of a file; nullopt when it does not exist.
StatusOr<std::optional<std::string>> read_file(const std::string& path, size_t max_bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return std::optional<std::string>();
    return errno_error("cannot open", path);
  }
  std::string out;
  struct stat st;
  if (::fstat(fd, &st) == 0 && st.st_size > 0) out.reserve(std::min(max_bytes, size_t(st.st_size)));
  char buf[1 << 16];
  while (out.size() < max_bytes) {
    const ssize_t n = ::read(fd, buf, std::min(sizeof buf, max_bytes - out.size()));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      Status s = errno_error("cannot read", path);
      ::close(fd);
      return s;
    }
    if (n == 0) break;
    out.append(buf, size_t(n));
  }
  ::close(fd);
  return std::optional<std::string>(std::move(out));
}

// The versions in a session directory, ascending; stale temporary files are removed on the way
// when `sweep` (a writer that crashed leaves them).
StatusOr<std::optional<std::vector<uint64_t>>> versions_in(const std::string& dir, bool sweep) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) {
    if (errno == ENOENT || errno == ENOTDIR) return std::optional<std::vector<uint64_t>>();
    return errno_error("cannot list", dir);
  }
  std::vector<uint64_t> out;
  const time_t now = ::time(nullptr);
  while (const dirent* e = ::readdir(d)) {
    uint64_t v = 0;
    if (parse_version_name(e->d_name, &v)) {
      out.push_back(v);
    } else if (sweep && std::strncmp(e->d_name, ".tmp.", 5) == 0) {
      const std::string path = absl::StrCat(dir, "/", e->d_name);
      struct stat st;
      if (::stat(path.c_str(), &st) == 0 && now - st.st_mtime > 600) ::unlink(path.c_str());
    }
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return std::optional<std::vector<uint64_t>>(std::move(out));
}

// Removes a directory and the files in it.
void remove_tree(const std::string& dir) {
  if (DIR* d = ::opendir(dir.c_str())) {
    while (const dirent* e = ::readdir(d)) {
      if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) {
        ::unlink(absl::StrCat(dir, "/", e->d_name).c_str());
      }
    }
    ::closedir(d);
  }
  ::rmdir(dir.c_str());
}

class DirStore final : public SessionStore {
 public:
  explicit DirStore(std::string dir) : dir_(std::move(dir)) {}

  Status commit(const std::string& key, const CommitRequest& req) override {
    EDGEINF_RETURN_IF_ERROR(check(key));
    if (req.record.empty() || req.version == 0) return absl::InvalidArgumentError("session store: empty record");
    const std::string dir = dir_of(key);
    if (req.version == 1) {
      if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return errno_error("cannot create", dir);
    } else {
      // The record follows version - 1, which must be there: a missing one means the session
      // was removed, or the store holds another history (restored from a backup).
      struct stat st;
      if (::stat(dir.c_str(), &st) != 0) {
        if (errno == ENOENT) return absl::NotFoundError("session store: the session was removed");
        return errno_error("cannot open", dir);
      }
      if (::stat(file_of(dir, req.version - 1).c_str(), &st) != 0) {
        if (errno != ENOENT) return errno_error("cannot open", file_of(dir, req.version - 1));
        return absl::AbortedError(absl::StrCat("session store: the session is no longer at version ", req.version - 1));
      }
    }
    const std::string tmp = absl::StrCat(dir, "/.tmp.", ::getpid(), ".", counter_.fetch_add(1));
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
      if (errno == ENOENT) return absl::NotFoundError("session store: the session was removed");
      return errno_error("cannot create", tmp);
    }
    std::string header(kMagic, sizeof kMagic);
    header.append(reinterpret_cast<const char*>(&req.version), 8);
    header.push_back(req.full ? 1 : 0);
    header.append(7, '\0');
    Status st = write_all(fd, header, tmp);
    if (st.ok()) st = write_all(fd, req.record, tmp);
    if (st.ok() && ::fsync(fd) != 0) st = errno_error("cannot fsync", tmp);
    ::close(fd);
    if (st.ok()) st = publish(tmp, file_of(dir, req.version));
    ::unlink(tmp.c_str());
    if (!st.ok()) return st;
    fsync_dir(dir);
    if (req.version == 1) fsync_dir(dir_);
    if (req.full) collect_garbage(dir, req.version);
    return absl::OkStatus();
  }

  StatusOr<std::optional<std::vector<StoredRecord>>> read(const std::string& key) override {
    EDGEINF_RETURN_IF_ERROR(check(key));
    const std::string dir = dir_of(key);
    for (int attempt = 0;; ++attempt) {
      EDGEINF_ASSIGN_OR_RETURN(auto versions, versions_in(dir, false));
      if (!versions || versions->empty()) return std::optional<std::vector<StoredRecord>>();
      // From the newest back to the latest full record.
      std::vector<StoredRecord> chain;
      bool vanished = false, full = false;
      for (size_t i = versions->size(); i-- > 0 && !full;) {
        const uint64_t v = (*versions)[i];
        if (!chain.empty() && v != chain.back().version - 1) {
          return absl::DataLossError(
              absl::StrCat("session store: version ", chain.back().version - 1, " of '", key, "' is missing"));
        }
        EDGEINF_ASSIGN_OR_RETURN(std::optional<std::string> bytes, read_file(file_of(dir, v), SIZE_MAX));
        if (!bytes) {
          vanished = true;  // removed by a compaction or a delete since the listing
          break;
        }
        EDGEINF_RETURN_IF_ERROR(check_file_header(*bytes, v, key, &full));
        chain.push_back({v, bytes->substr(kFileHeader)});
      }
      if (vanished) {
        if (attempt + 1 < kReadAttempts) continue;
        return absl::UnavailableError(absl::StrCat("session store: '", key, "' keeps changing under the reader"));
      }
      if (!full) {
        return absl::DataLossError(
            absl::StrCat("session store: '", key, "' has no full record before version ", chain.back().version));
      }
      std::reverse(chain.begin(), chain.end());
      return std::optional<std::vector<StoredRecord>>(std::move(chain));
    }
  }

  StatusOr<std::optional<StoredRecord>> read_head(const std::string& key) override {
    EDGEINF_RETURN_IF_ERROR(check(key));
    const std::string dir = dir_of(key);
    for (int attempt = 0; attempt < kReadAttempts; ++attempt) {
      EDGEINF_ASSIGN_OR_RETURN(auto versions, versions_in(dir, false));
      if (!versions || versions->empty()) return std::optional<StoredRecord>();
      const uint64_t v = versions->back();
      EDGEINF_ASSIGN_OR_RETURN(std::optional<std::string> bytes, read_file(file_of(dir, v), kFileHeader + kHeadBytes));
      if (!bytes) continue;  // superseded and removed meanwhile: list again
      bool full = false;
      EDGEINF_RETURN_IF_ERROR(check_file_header(*bytes, v, key, &full));
      return std::optional<StoredRecord>(StoredRecord{v, bytes->substr(kFileHeader)});
    }
    return absl::UnavailableError(absl::StrCat("session store: '", key, "' keeps changing under the reader"));
  }

  Status remove(const std::string& key) override {
    EDGEINF_RETURN_IF_ERROR(check(key));
    const std::string dir = dir_of(key);
    // Out of the namespace first (one rename), so no reader sees half a session.
    const std::string trash = absl::StrCat(dir_, "/.trash.", ::getpid(), ".", counter_.fetch_add(1));
    if (::rename(dir.c_str(), trash.c_str()) != 0) {
      if (errno == ENOENT) return absl::OkStatus();
      return errno_error("cannot remove", dir);
    }
    fsync_dir(dir_);
    remove_tree(trash);
    return absl::OkStatus();
  }

  StatusOr<std::vector<std::string>> list(const std::string& prefix) override {
    DIR* d = ::opendir(dir_.c_str());
    if (d == nullptr) return errno_error("cannot list", dir_);
    std::vector<std::string> keys;
    while (const dirent* e = ::readdir(d)) {
      if (e->d_name[0] == '.') continue;
      std::string key = absl::StrReplaceAll(e->d_name, {{"@", "/"}});
      if (key.compare(0, prefix.size(), prefix) == 0 && valid_key(key)) keys.push_back(std::move(key));
    }
    ::closedir(d);
    std::sort(keys.begin(), keys.end());
    return keys;
  }

  Status ping() override {
    struct stat st;
    if (::stat(dir_.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return errno_error("cannot open", dir_);
    if (::access(dir_.c_str(), W_OK) != 0) return errno_error("cannot write", dir_);
    return absl::OkStatus();
  }

  std::string url() const override { return "dir://" + dir_; }

  // Removes what a crash left mid-removal.
  void sweep_trash() {
    DIR* d = ::opendir(dir_.c_str());
    if (d == nullptr) return;
    std::vector<std::string> trash;
    while (const dirent* e = ::readdir(d)) {
      if (std::strncmp(e->d_name, ".trash.", 7) == 0) trash.push_back(absl::StrCat(dir_, "/", e->d_name));
    }
    ::closedir(d);
    for (const std::string& t : trash) remove_tree(t);
  }

 private:
  static Status check(const std::string& key) {
    if (!valid_key(key)) return absl::InvalidArgumentError(absl::StrCat("session store: bad key '", key, "'"));
    return absl::OkStatus();
  }
  // Keys may hold '/', which the directory name spells '@'.
  std::string dir_of(const std::string& key) const {
    return absl::StrCat(dir_, "/", absl::StrReplaceAll(key, {{"/", "@"}}));
  }
  static std::string file_of(const std::string& dir, uint64_t v) { return absl::StrCat(dir, "/", version_name(v)); }

  static Status check_file_header(const std::string& bytes, uint64_t v, const std::string& key, bool* full) {
    uint64_t stored = 0;
    if (bytes.size() > kFileHeader) std::memcpy(&stored, bytes.data() + 8, 8);
    if (bytes.size() <= kFileHeader || std::memcmp(bytes.data(), kMagic, 8) != 0 || stored != v ||
        uint8_t(bytes[16]) > 1) {
      return absl::DataLossError(absl::StrCat("session store: version ", v, " of '", key, "' is damaged"));
    }
    *full = bytes[16] == 1;
    return absl::OkStatus();
  }

  // Links tmp to name unless name exists (the commit race: Aborted). Filesystems without hard links
  // get rename without replacing.
  static Status publish(const std::string& tmp, const std::string& name) {
    if (::link(tmp.c_str(), name.c_str()) == 0) return absl::OkStatus();
    int e = errno;
    if (e == EPERM || e == EOPNOTSUPP || e == EMLINK) {
      if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, name.c_str(), RENAME_NOREPLACE) == 0) return absl::OkStatus();
      e = errno;
    }
    if (e == EEXIST) return absl::AbortedError("session store: another writer committed this version first");
    if (e == ENOENT) return absl::NotFoundError("session store: the session was removed");
    return errno_error("cannot commit", name, e);
  }

  // After a full record at `version`: the older versions are no longer read.
  static void collect_garbage(const std::string& dir, uint64_t version) {
    auto versions = versions_in(dir, true);
    if (!versions.ok() || !*versions) return;
    for (uint64_t v : **versions) {
      if (v < version) ::unlink(file_of(dir, v).c_str());
    }
  }

  std::string dir_;
  std::atomic<uint64_t> counter_{0};
};

}  // namespace

Status make_store_directory(const std::string& path) {
  if (path.empty()) return absl::InvalidArgumentError("dir:// store needs a directory");
  for (size_t i = 1; i <= path.size(); ++i) {
    if (i == path.size() || path[i] == '/') {
      const std::string part = path.substr(0, i);
      if (::mkdir(part.c_str(), 0700) != 0 && errno != EEXIST) return errno_error("cannot create directory", part);
    }
  }
  return absl::OkStatus();
}

StatusOr<std::unique_ptr<SessionStore>> open_dir_store(const std::string& path) {
  if (path.empty()) return absl::InvalidArgumentError("dir:// store needs a directory");
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return errno_error("cannot open", path);
  if (!S_ISDIR(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat("session store: '", path, "' is not a directory"));
  }
  auto store = std::make_unique<DirStore>(path);
  store->sweep_trash();
  return std::unique_ptr<SessionStore>(std::move(store));
}

}  // namespace edgeinf
