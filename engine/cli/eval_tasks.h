// Long-context evaluation tasks as token sequences: perplexity windows of real prose, passkey
// retrieval in filler text, and single/multi needle retrieval in a prose haystack.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/tokenizer/tokenizer.h"

namespace edgeinf::cli {

struct RetrievalPrompt {
  std::vector<TokenId> tokens;
  std::vector<std::string> answers;  // each expected somewhere in the generated text
};

// `length` tokens of passkey retrieval: the usual repeated filler with the key stated at `depth`
// (0 = start, 1 = end of the filler), ending with the question.
RetrievalPrompt passkey_prompt(const Tokenizer& tok, int64_t length, double depth, uint64_t seed);

// `length` tokens of prose from `haystack` (starting at a seeded offset) with `n_needles`
// "special magic number" sentences; one needle goes at `depth`, further ones spread evenly.
RetrievalPrompt needle_prompt(const Tokenizer& tok, const std::vector<TokenId>& haystack, int64_t length, double depth,
                              int n_needles, uint64_t seed);

// Fraction of answers found in `generated`.
double retrieval_score(const RetrievalPrompt& p, const std::string& generated);

}  // namespace edgeinf::cli
