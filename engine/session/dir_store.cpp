// The dir:// session store: a file per key, written atomically (temp + fsync + rename + fsync dir).
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "engine/session/session_store.h"

namespace edgeinf {
namespace {

Status errno_error(const std::string& what, const std::string& path) {
  const int e = errno;
  return absl::UnavailableError(absl::StrCat("session store: ", what, " '", path, "': ", std::strerror(e)));
}

bool valid_key(const std::string& key) {
  if (key.empty() || key.size() > 200) return false;
  return std::all_of(key.begin(), key.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
           c == '/';
  });
}

class DirStore final : public SessionStore {
 public:
  explicit DirStore(std::string dir) : dir_(std::move(dir)) {}

  Status put(const std::string& key, const std::string& bytes) override {
    EDGEINF_RETURN_IF_ERROR(check(key));
    if (bytes.empty()) return absl::InvalidArgumentError("session store: empty value");
    const std::string path = file_of(key);
    const std::string tmp = absl::StrCat(path, ".tmp.", ::getpid(), ".", counter_.fetch_add(1));
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return errno_error("cannot create", tmp);
    size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        Status st = errno_error("cannot write", tmp);
        ::close(fd);
        ::unlink(tmp.c_str());
        return st;
      }
      done += size_t(n);
    }
    if (::fsync(fd) != 0) {
      Status st = errno_error("cannot fsync", tmp);
      ::close(fd);
      ::unlink(tmp.c_str());
      return st;
    }
    ::close(fd);
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
      Status st = errno_error("cannot rename into", path);
      ::unlink(tmp.c_str());
      return st;
    }
    const int dfd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      ::fsync(dfd);
      ::close(dfd);
    }
    return absl::OkStatus();
  }

  StatusOr<std::optional<std::string>> get(const std::string& key) override {
    return get_head(key, std::string::npos);
  }

  StatusOr<std::optional<std::string>> get_head(const std::string& key, size_t max_bytes) override {
    EDGEINF_RETURN_IF_ERROR(check(key));
    const std::string path = file_of(key);
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      if (errno == ENOENT) return std::optional<std::string>();
      return errno_error("cannot open", path);
    }
    std::string out;
    char buf[1 << 16];
    while (out.size() < max_bytes) {
      const ssize_t n = ::read(fd, buf, std::min(sizeof buf, max_bytes - out.size()));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        Status st = errno_error("cannot read", path);
        ::close(fd);
        return st;
      }
      if (n == 0) break;
      out.append(buf, size_t(n));
    }
    ::close(fd);
    return std::optional<std::string>(std::move(out));
  }

  Status remove(const std::string& key) override {
    EDGEINF_RETURN_IF_ERROR(check(key));
    const std::string path = file_of(key);
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) return errno_error("cannot remove", path);
    return absl::OkStatus();
  }

  StatusOr<std::vector<std::string>> list(const std::string& prefix) override {
    DIR* d = ::opendir(dir_.c_str());
    if (d == nullptr) return errno_error("cannot list", dir_);
    std::vector<std::string> keys;
    while (const dirent* e = ::readdir(d)) {
      std::string name = e->d_name;
      if (name.size() < 5 || name.substr(name.size() - 5) != ".snap") continue;
      std::string key = absl::StrReplaceAll(name.substr(0, name.size() - 5), {{"@", "/"}});
      if (key.compare(0, prefix.size(), prefix) == 0) keys.push_back(std::move(key));
    }
    ::closedir(d);
    std::sort(keys.begin(), keys.end());
    return keys;
  }

  std::string url() const override { return "dir://" + dir_; }

 private:
  static Status check(const std::string& key) {
    if (!valid_key(key)) return absl::InvalidArgumentError(absl::StrCat("session store: bad key '", key, "'"));
    return absl::OkStatus();
  }
  // Keys may hold '/', which the file name spells '@'.
  std::string file_of(const std::string& key) const {
    return absl::StrCat(dir_, "/", absl::StrReplaceAll(key, {{"/", "@"}}), ".snap");
  }

  std::string dir_;
  std::atomic<uint64_t> counter_{0};
};

}  // namespace

StatusOr<std::unique_ptr<SessionStore>> open_dir_store(const std::string& path) {
  if (path.empty()) return absl::InvalidArgumentError("dir:// store needs a directory");
  // mkdir -p
  for (size_t i = 1; i <= path.size(); ++i) {
    if (i == path.size() || path[i] == '/') {
      const std::string part = path.substr(0, i);
      if (::mkdir(part.c_str(), 0700) != 0 && errno != EEXIST) return errno_error("cannot create directory", part);
    }
  }
  struct stat st;
  if (::stat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat("session store: '", path, "' is not a directory"));
  }
  return std::unique_ptr<SessionStore>(new DirStore(path));
}

}  // namespace edgeinf
