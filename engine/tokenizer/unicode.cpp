// UTF-8 codec and codepoint flag lookup over the generated range tables.
#include "engine/tokenizer/unicode.h"

#include <algorithm>
#include <array>

namespace edgeinf::unicode {
namespace {

// Flags of U+0000..U+007F, looked up once: pre-tokenizers mostly see ASCII.
const std::array<uint16_t, 128>& ascii_flags() {
  static const std::array<uint16_t, 128> table = [] {
    std::array<uint16_t, 128> flags{};
    for (uint32_t cp = 0; cp < 128; ++cp) {
      const CodepointRange* end = kCodepointRanges + kNumCodepointRanges;
      const CodepointRange* it = std::upper_bound(
          kCodepointRanges, end, cp, [](uint32_t value, const CodepointRange& range) { return value < range.first; });
      if (it != kCodepointRanges && (it - 1)->last >= cp) flags[cp] = (it - 1)->flags;
    }
    return flags;
  }();
  return table;
}

// What a lead byte announces: the sequence length (0 when it cannot lead) and the range its
// second byte must fall in. Tightening that range rejects overlong forms, surrogates and values
// above U+10FFFF at the earliest byte (the "maximal subpart" rule of Unicode chapter 3).
struct SequenceShape {
  int length = 0;
  uint8_t lower = 0x80;
  uint8_t upper = 0xBF;
  bool accepts(int k, uint8_t byte) const { return k == 1 ? (byte >= lower && byte <= upper) : (byte & 0xC0) == 0x80; }
};

SequenceShape sequence_shape(uint8_t lead) {
  SequenceShape shape;
  if (lead < 0x80) {
    shape.length = 1;
  } else if (lead >= 0xC2 && lead <= 0xDF) {
    shape.length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    shape.length = 3;
    if (lead == 0xE0) shape.lower = 0xA0;
    if (lead == 0xED) shape.upper = 0x9F;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    shape.length = 4;
    if (lead == 0xF0) shape.lower = 0x90;
    if (lead == 0xF4) shape.upper = 0x8F;
  }
  return shape;
}

}  // namespace

uint16_t codepoint_flags(uint32_t cp) {
  if (cp < 128) return ascii_flags()[cp];
  if (cp > kMaxCodepoint) return 0;
  const CodepointRange* end = kCodepointRanges + kNumCodepointRanges;
  const CodepointRange* it = std::upper_bound(
      kCodepointRanges, end, cp, [](uint32_t value, const CodepointRange& range) { return value < range.first; });
  if (it == kCodepointRanges) return 0;
  --it;
  return cp <= it->last ? it->flags : 0;
}

int utf8_sequence_length(uint8_t lead) {
  if (lead < 0x80) return 1;
  if (lead < 0xC0) return 0;
  if (lead < 0xE0) return 2;
  if (lead < 0xF0) return 3;
  if (lead < 0xF8) return 4;
  return 0;
}

uint32_t decode_utf8(std::string_view text, size_t& pos) {
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(text[i]); };
  const uint8_t lead = byte(pos);
  if (lead < 0x80) {
    ++pos;
    return lead;
  }
  const SequenceShape shape = sequence_shape(lead);
  if (shape.length == 0) {
    ++pos;
    return kReplacementChar;
  }
  uint32_t cp = lead & (0x7F >> shape.length);
  size_t i = pos + 1;
  for (int k = 1; k < shape.length; ++k, ++i) {
    if (i >= text.size() || !shape.accepts(k, byte(i))) {
      pos = i;
      return kReplacementChar;
    }
    cp = (cp << 6) | (byte(i) & 0x3F);
  }
  pos = i;
  return cp;
}

bool is_incomplete_utf8(std::string_view bytes) {
  if (bytes.empty()) return false;
  const SequenceShape shape = sequence_shape(static_cast<uint8_t>(bytes[0]));
  if (shape.length <= 1 || bytes.size() >= static_cast<size_t>(shape.length)) return false;
  for (size_t k = 1; k < bytes.size(); ++k) {
    if (!shape.accepts(static_cast<int>(k), static_cast<uint8_t>(bytes[k]))) return false;
  }
  return true;
}

void append_utf8(uint32_t cp, std::string& out) {
  if (cp > kMaxCodepoint || (cp >= 0xD800 && cp <= 0xDFFF)) cp = kReplacementChar;
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string encode_utf8(uint32_t cp) {
  std::string out;
  append_utf8(cp, out);
  return out;
}

bool is_valid_utf8(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t start = pos;
    const uint32_t cp = decode_utf8(text, pos);
    // A genuine U+FFFD in the text is three bytes EF BF BD; an error yields it for other input.
    if (cp == kReplacementChar && text.substr(start, pos - start) != "\xEF\xBF\xBD") return false;
  }
  return true;
}

}  // namespace edgeinf::unicode
