// Writing a whole file so that a reader (or a crash) sees the old contents or the new ones, never
// a part: the bytes go to PATH.tmp, are synced, and the temporary file is renamed over PATH.
#pragma once

#include <cstddef>
#include <string>

#include "engine/util/status.h"

namespace edgeinf {

// Unavailable (with the system's reason) when the file cannot be written; PATH.tmp is removed then.
Status write_file_atomically(const std::string& path, const void* data, size_t size);

}  // namespace edgeinf
