// Documents made of sections of real prose, and the names that tell those sections apart: what
// the summary evaluation (`coverage`) and the segment-wise instruction samples (S-SFT) are built on.
#pragma once

#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "engine/tokenizer/tokenizer.h"
#include "engine/util/status.h"

namespace edgeinf {

// The paragraphs of `text` (separated by blank lines; empty ones skipped), each tokenised.
std::vector<std::vector<TokenId>> encode_paragraphs(const Tokenizer& tok, const std::string& text);

// Whether `word` occurs in `text` with no letter on either side.
bool has_word(const std::string& text, const std::string& word);

// Capitalised words of four letters or more (words that open sentences, or that every section
// shares such as "Lord", left out) inside sentences, and their counts: names, for the most part.
std::map<std::string, int> names_in(const std::string& text);

// Up to three of `names` used at least twice that no text of `others` contains, the most frequent
// first.
std::vector<std::string> key_terms(const std::map<std::string, int>& names,
                                   const std::vector<const std::string*>& others);

// A section: paragraphs [first, end) joined by blank lines and cut at the section's length.
struct DocumentSection {
  size_t first = 0, end = 0;
  std::vector<TokenId> tokens;
  std::string text;                // tokens decoded
  std::vector<std::string> terms;  // its key terms against the other sections (never empty)
};

// n_sections sections of exactly `tokens_each` tokens, each from a paragraph drawn by `rng` on,
// apart from one another, each with a key term of its own; an error when the paragraphs do not
// hold them.
StatusOr<std::vector<DocumentSection>> draw_sections(const Tokenizer& tok,
                                                     const std::vector<std::vector<TokenId>>& paragraphs,
                                                     int n_sections, int64_t tokens_each, std::mt19937_64& rng);

}  // namespace edgeinf
