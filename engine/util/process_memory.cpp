#include "engine/util/process_memory.h"

#include <unistd.h>

#include <cstdio>

namespace edgeinf {

size_t resident_bytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  unsigned long size = 0, resident = 0;
  const int n = std::fscanf(f, "%lu %lu", &size, &resident);
  std::fclose(f);
  if (n != 2) return 0;
  return size_t(resident) * size_t(::sysconf(_SC_PAGESIZE));
}

}  // namespace edgeinf
