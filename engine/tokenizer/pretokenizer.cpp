// Hand-written matchers equivalent to the GPT-2, Llama-3 and Qwen2 pre-tokenizer regexes, applied
// as leftmost-first alternations over codepoints, with each piece's end acting as end of text.
#include "engine/tokenizer/pretokenizer.h"

#include <utility>

#include "engine/tokenizer/unicode.h"

namespace edgeinf {
namespace {

using Pass = Pretokenizer::Pass;

// The text decoded once: codepoint i spans bytes offsets[i]..offsets[i+1] and carries flags[i].
struct DecodedText {
  std::vector<uint32_t> cps;
  std::vector<uint16_t> flags;
  std::vector<size_t> offsets;
};

DecodedText decode_text(std::string_view text) {
  DecodedText out;
  out.cps.reserve(text.size());
  out.flags.reserve(text.size());
  out.offsets.reserve(text.size() + 1);
  size_t pos = 0;
  while (pos < text.size()) {
    out.offsets.push_back(pos);
    const uint32_t cp = unicode::decode_utf8(text, pos);
    out.cps.push_back(cp);
    out.flags.push_back(unicode::codepoint_flags(cp));
  }
  out.offsets.push_back(pos);
  return out;
}

// Codepoint index range [begin, end) of one piece.
struct Piece {
  size_t begin;
  size_t end;
};

// Character classes over one piece; positions at or past `end` belong to no class, which makes
// the piece's end behave as the end of the text for lookaheads.
class Cursor {
 public:
  Cursor(const DecodedText& text, size_t end) : text_(text), end_(end) {}

  uint32_t cp(size_t i) const { return i < end_ ? text_.cps[i] : kNone; }
  bool letter(size_t i) const { return i < end_ && (text_.flags[i] & unicode::kLetter); }
  bool number(size_t i) const { return i < end_ && (text_.flags[i] & unicode::kNumber); }
  bool space(size_t i) const { return i < end_ && (text_.flags[i] & unicode::kWhitespace); }
  // [^\s\p{L}\p{N}]
  bool other(size_t i) const {
    return i < end_ && !(text_.flags[i] & (unicode::kWhitespace | unicode::kLetter | unicode::kNumber));
  }
  bool newline(size_t i) const { return cp(i) == '\r' || cp(i) == '\n'; }
  size_t end() const { return end_; }

  size_t skip_letters(size_t i) const {
    while (letter(i)) ++i;
    return i;
  }
  size_t skip_numbers(size_t i) const {
    while (number(i)) ++i;
    return i;
  }
  size_t skip_others(size_t i) const {
    while (other(i)) ++i;
    return i;
  }
  size_t skip_spaces(size_t i) const {
    while (space(i)) ++i;
    return i;
  }

  // \s+(?!\S)|\s+ at a whitespace position i: the run minus its last character when a
  // non-space follows and the run is longer than one; otherwise the whole run.
  size_t match_space_run(size_t i) const {
    const size_t run_end = skip_spaces(i);
    if (run_end < end_ && run_end - i >= 2) return run_end - 1;
    return run_end;
  }

 private:
  static constexpr uint32_t kNone = 0xFFFFFFFF;
  const DecodedText& text_;
  size_t end_;
};

// Case-folds the letters of the (?i:'s|'t|'re|'ve|'m|'ll|'d) contractions: ASCII, and U+017F
// LATIN SMALL LETTER LONG S, which Unicode case folding maps to 's'.
uint32_t fold_contraction_letter(uint32_t cp) {
  if (cp >= 'A' && cp <= 'Z') return cp + ('a' - 'A');
  if (cp == 0x017F) return 's';
  return cp;
}

// Length after i of a contraction ('s 't 're 've 'm 'll 'd) starting at i, or 0.
size_t match_contraction(const Cursor& c, size_t i, bool case_insensitive) {
  if (c.cp(i) != '\'') return 0;
  const auto at = [&](size_t k) { return case_insensitive ? fold_contraction_letter(c.cp(k)) : c.cp(k); };
  const uint32_t c1 = at(i + 1);
  if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return 2;
  const uint32_t c2 = at(i + 2);
  if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) return 3;
  return 0;
}

// End of the GPT-2 regex match starting at i (always > i).
size_t match_gpt2(const Cursor& c, size_t i) {
  if (size_t n = match_contraction(c, i, /*case_insensitive=*/false)) return i + n;
  const bool lead_space = c.cp(i) == ' ';
  // ` ?\p{L}+`
  if (c.letter(i)) return c.skip_letters(i);
  if (lead_space && c.letter(i + 1)) return c.skip_letters(i + 1);
  // ` ?\p{N}+`
  if (c.number(i)) return c.skip_numbers(i);
  if (lead_space && c.number(i + 1)) return c.skip_numbers(i + 1);
  // ` ?[^\s\p{L}\p{N}]+`
  if (c.other(i)) return c.skip_others(i);
  if (lead_space && c.other(i + 1)) return c.skip_others(i + 1);
  // `\s+(?!\S)|\s+`
  if (c.space(i)) return c.match_space_run(i);
  return i + 1;  // unreachable: every codepoint is a letter, number, space or other
}

// End of the Llama-3 (max_digits = 3) or Qwen2 (max_digits = 1) regex match starting at i.
size_t match_llama3(const Cursor& c, size_t i, size_t max_digits) {
  if (size_t n = match_contraction(c, i, /*case_insensitive=*/true)) return i + n;
  // `[^\r\n\p{L}\p{N}]?\p{L}+`
  if (c.letter(i)) return c.skip_letters(i);
  if (!c.newline(i) && !c.number(i) && c.letter(i + 1)) return c.skip_letters(i + 1);
  // `\p{N}{1,3}`
  if (c.number(i)) {
    size_t k = i;
    while (c.number(k) && k - i < max_digits) ++k;
    return k;
  }
  // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
  size_t start = c.cp(i) == ' ' && c.other(i + 1) ? i + 1 : i;
  if (c.other(start)) {
    size_t k = c.skip_others(start);
    while (c.newline(k)) ++k;
    return k;
  }
  if (c.space(i)) {
    // `\s*[\r\n]+`: the longest stretch of the whitespace run that ends in a line break.
    const size_t run_end = c.skip_spaces(i);
    for (size_t k = run_end; k > i; --k) {
      if (c.newline(k - 1)) return k;
    }
    // `\s+(?!\S)|\s+`
    return c.match_space_run(i);
  }
  return i + 1;  // unreachable: every codepoint is a letter, number, space or other
}

void split_individual_digits(const DecodedText& text, Piece piece, std::vector<Piece>& out) {
  size_t start = piece.begin;
  for (size_t i = piece.begin; i < piece.end; ++i) {
    if (!(text.flags[i] & unicode::kNumber)) continue;
    if (start < i) out.push_back({start, i});
    out.push_back({i, i + 1});
    start = i + 1;
  }
  if (start < piece.end) out.push_back({start, piece.end});
}

void split_regex(const DecodedText& text, Piece piece, Pass pass, std::vector<Piece>& out) {
  const Cursor cursor(text, piece.end);
  size_t i = piece.begin;
  while (i < piece.end) {
    size_t next = 0;
    switch (pass) {
      case Pass::kGpt2: next = match_gpt2(cursor, i); break;
      case Pass::kLlama3: next = match_llama3(cursor, i, 3); break;
      case Pass::kQwen2: next = match_llama3(cursor, i, 1); break;
      case Pass::kIndividualDigits: next = piece.end; break;
    }
    out.push_back({i, next});
    i = next;
  }
}

}  // namespace

StatusOr<Pretokenizer> Pretokenizer::from_name(std::string_view name) {
  const std::string key = name.empty() ? std::string("default") : std::string(name);
  for (const char* alias : {"default", "gpt2", "gpt-2"}) {
    if (key == alias) return Pretokenizer(key, {Pass::kGpt2}, false);
  }
  for (const char* alias : {"smollm", "starcoder", "refact"}) {
    if (key == alias) return Pretokenizer(key, {Pass::kIndividualDigits, Pass::kGpt2}, false);
  }
  for (const char* alias : {"llama3", "llama-bpe", "llama-v3"}) {
    if (key == alias) return Pretokenizer(key, {Pass::kLlama3}, true);
  }
  for (const char* alias : {"dbrx", "smaug-bpe"}) {
    if (key == alias) return Pretokenizer(key, {Pass::kLlama3}, false);
  }
  for (const char* alias : {"qwen2", "deepseek-r1-qwen"}) {
    if (key == alias) return Pretokenizer(key, {Pass::kQwen2}, false);
  }
  return absl::InvalidArgumentError("unsupported pre-tokenizer '" + std::string(name) + "' (tokenizer.ggml.pre)");
}

void Pretokenizer::split(std::string_view text, std::vector<TextSpan>& words) const {
  if (text.empty()) return;
  const DecodedText decoded = decode_text(text);
  std::vector<Piece> pieces = {{0, decoded.cps.size()}};
  std::vector<Piece> next;
  for (Pass pass : passes_) {
    next.clear();
    for (const Piece& piece : pieces) {
      if (pass == Pass::kIndividualDigits) {
        split_individual_digits(decoded, piece, next);
      } else {
        split_regex(decoded, piece, pass, next);
      }
    }
    pieces.swap(next);
  }
  for (const Piece& piece : pieces) {
    words.push_back({decoded.offsets[piece.begin], decoded.offsets[piece.end]});
  }
}

}  // namespace edgeinf
