// CRC-32C (Castagnoli), the checksum of snapshot sections.
#pragma once

#include <cstddef>
#include <cstdint>

namespace edgeinf {

uint32_t crc32c(const void* data, size_t n, uint32_t crc = 0);

}  // namespace edgeinf
