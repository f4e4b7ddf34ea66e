// The tiny random-weight model the golden_reference test writes (GQA with odd head counts), and
// seeded random token sequences for it.
#pragma once

#include <cstdint>
#include <vector>

#include <gtest/gtest.h>

#include "engine/runtime/llama_context.h"
#include "tests/must.h"
#include "tests/test_paths.h"

namespace edgeinf::testing {

inline const LlamaModel& tiny_model() {
  static const LlamaModel* model = [] {
    // The golden_reference test writes the tiny models.
    return must(LlamaModel::load(golden_dir() + "/tiny_gqa_odd.gguf"), "the tiny model").release();
  }();
  return *model;
}

inline std::vector<TokenId> random_tokens(int n, int n_vocab, uint64_t seed) {
  std::vector<TokenId> out(static_cast<size_t>(n));
  uint64_t x = seed;
  for (TokenId& t : out) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    t = TokenId((x >> 33) % uint64_t(n_vocab));
  }
  return out;
}

}  // namespace edgeinf::testing
