// Long-context evaluation tasks as token sequences: perplexity windows of real prose, passkey
// retrieval in filler text, single/multi needle retrieval in a prose haystack, and questions about
// facts stated at several depths of a long document.
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

// A document of `length` tokens of prose from `haystack` with one everyday fact per depth ("Doctor
// Okafor keeps the brass compass in the boathouse."; people, objects and places distinct within
// the document), and one question per fact, to be asked after the whole document, each on its own.
struct DocQa {
  struct Question {
    double depth = 0;
    std::vector<TokenId> tokens;  // the question and the start of the answer sentence
    std::string answer;           // the place
  };
  std::vector<TokenId> document;
  std::vector<Question> questions;  // in the order of `depths`
};
inline constexpr size_t kDocQaMaxFacts = 12;  // distinct people, objects and places
DocQa docqa_prompt(const Tokenizer& tok, const std::vector<TokenId>& haystack, int64_t length,
                   const std::vector<double>& depths, uint64_t seed);

// Exact match: 1 when the generated answer's first clause (up to the first '.', ',' or newline)
// contains the expected answer as a whole word, else 0.
double docqa_score(const std::string& answer, const std::string& generated);

}  // namespace edgeinf::cli
