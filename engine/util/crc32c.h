// CRC-32C (Castagnoli), the checksum of snapshot sections and store records.
#pragma once

#include <cstddef>
#include <cstdint>

namespace edgeinf {

// Continues `crc` over n bytes (0 to start); the hardware instruction where there is one.
uint32_t crc32c(const void* data, size_t n, uint32_t crc = 0);
// The same, a byte at a time from a table: the reference the fast path is tested against.
uint32_t crc32c_reference(const void* data, size_t n, uint32_t crc = 0);

}  // namespace edgeinf
