// Whole-file writes by rename; see atomic_file.h.
#include "engine/util/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace edgeinf {

Status write_file_atomically(const std::string& path, const void* data, size_t size) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("cannot create '", tmp, "': ", std::strerror(errno)));
  const auto* bytes = static_cast<const char*>(data);
  size_t done = 0;
  while (done < size) {
    const ssize_t n = ::write(fd, bytes + done, size - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return absl::UnavailableError(absl::StrCat("cannot write '", tmp, "': ", std::strerror(err)));
    }
    done += size_t(n);
  }
  const bool synced = ::fsync(fd) == 0;
  int err = synced ? 0 : errno;
  const bool closed = ::close(fd) == 0;
  if (synced && !closed) err = errno;
  if (!synced || !closed || std::rename(tmp.c_str(), path.c_str()) != 0) {
    if (err == 0) err = errno;
    ::unlink(tmp.c_str());
    return absl::UnavailableError(absl::StrCat("cannot commit '", path, "': ", std::strerror(err)));
  }
  return absl::OkStatus();
}

}  // namespace edgeinf
