// UTF-8 decoding and encoding plus the Unicode category flags that the regex pre-tokenizers test
// (\p{L}, \p{N}, \s and friends). Flags come from the generated tables in unicode_data.cpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace edgeinf::unicode {

// One bit per general-category group, plus White_Space. A codepoint may carry several bits
// (U+0020 is a separator and whitespace); unassigned codepoints carry none.
enum CodepointFlag : uint16_t {
  kNumber = 1 << 0,       // \p{N}: Nd, Nl, No
  kLetter = 1 << 1,       // \p{L}: Lu, Ll, Lt, Lm, Lo
  kSeparator = 1 << 2,    // \p{Z}
  kMark = 1 << 3,         // \p{M}: combining marks
  kPunctuation = 1 << 4,  // \p{P}
  kSymbol = 1 << 5,       // \p{S}
  kControl = 1 << 6,      // \p{C} minus unassigned: Cc, Cf, Co, Cs
  kWhitespace = 1 << 7,   // White_Space property, what \s matches
};

// Codepoints first..last (inclusive) all carry `flags`.
struct CodepointRange {
  uint32_t first;
  uint32_t last;
  uint16_t flags;
};

// Generated tables (unicode_data.cpp): sorted, disjoint ranges of assigned codepoints.
extern const CodepointRange kCodepointRanges[];
extern const size_t kNumCodepointRanges;
extern const char kUnicodeVersion[];

constexpr uint32_t kReplacementChar = 0xFFFD;
constexpr uint32_t kMaxCodepoint = 0x10FFFF;

// Flag bits of a codepoint; 0 for unassigned codepoints and values above U+10FFFF.
uint16_t codepoint_flags(uint32_t cp);

inline bool is_letter(uint32_t cp) { return (codepoint_flags(cp) & kLetter) != 0; }
inline bool is_number(uint32_t cp) { return (codepoint_flags(cp) & kNumber) != 0; }
inline bool is_whitespace(uint32_t cp) { return (codepoint_flags(cp) & kWhitespace) != 0; }

// Number of bytes of a UTF-8 sequence announced by its lead byte: 1..4, or 0 when `lead` cannot
// start a sequence (a continuation byte or 0xF8..0xFF).
int utf8_sequence_length(uint8_t lead);

// Decodes the codepoint starting at text[pos] and advances pos past it. A malformed sequence
// (truncated, overlong, surrogate, above U+10FFFF, stray continuation byte) yields
// kReplacementChar and advances past its maximal valid prefix, at least one byte. Requires
// pos < text.size().
uint32_t decode_utf8(std::string_view text, size_t& pos);

// True when `bytes` is a proper prefix of a well-formed sequence: more bytes could complete it.
bool is_incomplete_utf8(std::string_view bytes);

// Appends the UTF-8 encoding of cp; values that are not scalar values append U+FFFD.
void append_utf8(uint32_t cp, std::string& out);
std::string encode_utf8(uint32_t cp);

// True when `text` is well-formed UTF-8 in full.
bool is_valid_utf8(std::string_view text);

}  // namespace edgeinf::unicode
