// Long-context evaluation tasks as token sequences: perplexity windows of real prose, passkey
// retrieval in filler text, single/multi needle retrieval in a prose haystack, questions about
// facts stated at several depths of a long document, and a summary of a document of sections.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/tokenizer/tokenizer.h"
#include "engine/util/status.h"

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
    std::vector<TokenId> tokens;         // the question and the start of the answer sentence
    std::string answer;                  // the place
    std::vector<TokenId> answer_tokens;  // the rest of the sentence as the fact states it (" place.")
  };
  std::vector<TokenId> document;
  std::vector<Question> questions;  // in the order of `depths`
};
inline constexpr size_t kDocQaMaxFacts = 12;  // distinct people, objects and places
DocQa docqa_prompt(const Tokenizer& tok, const std::vector<TokenId>& haystack, int64_t length,
                   const std::vector<double>& depths, uint64_t seed);

// A chat turn asking for a summary of a document of `n_sections` sections of `paragraphs` (each
// section runs from a seeded paragraph on, the sections apart from one another), `length` tokens
// in all with the template. Each section's key terms are its names: capitalised words of four
// letters or more inside sentences (common words left out) that it uses at least twice and no other
// section contains; up to three, the most frequent first; sections without one are drawn again.
struct Coverage {
  struct Section {
    double depth = 0;  // of the section's middle
    std::vector<std::string> terms;
  };
  std::vector<TokenId> tokens;
  std::vector<Section> sections;
};
StatusOr<Coverage> coverage_prompt(const Tokenizer& tok, const std::vector<std::vector<TokenId>>& paragraphs,
                                   int64_t length, int n_sections, uint64_t seed);

// 1 when the summary names one of the section's key terms (as a whole word), else 0.
double coverage_score(const std::vector<std::string>& terms, const std::string& summary);

// Exact match: 1 when the generated answer's first clause (up to the first '.', ',' or newline)
// contains the expected answer as a whole word, else 0.
double docqa_score(const std::string& answer, const std::string& generated);

}  // namespace edgeinf::cli
