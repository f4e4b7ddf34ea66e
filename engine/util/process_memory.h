// The process's memory as the operating system counts it.
#pragma once

#include <cstddef>

namespace edgeinf {

// Resident set size in bytes (Linux: /proc/self/statm); 0 when it cannot be read.
size_t resident_bytes();

}  // namespace edgeinf
