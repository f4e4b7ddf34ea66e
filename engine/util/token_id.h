// A token's index in the model's vocabulary: what the tokenizer produces, the model reads and the
// sampler draws.
#pragma once

#include <cstdint>

namespace edgeinf {

using TokenId = int32_t;

}  // namespace edgeinf
