// Utf8Stream: holds back an incomplete trailing UTF-8 sequence between pushes.
#include "engine/tokenizer/utf8_stream.h"

#include "engine/tokenizer/unicode.h"

namespace edgeinf {
namespace {

// Appends the characters of `bytes` to `out`, malformed sequences as U+FFFD.
void append_sanitized(std::string_view bytes, std::string& out) {
  size_t pos = 0;
  while (pos < bytes.size()) {
    const size_t start = pos;
    const uint32_t cp = unicode::decode_utf8(bytes, pos);
    if (cp == unicode::kReplacementChar) {
      unicode::append_utf8(cp, out);
    } else {
      out.append(bytes, start, pos - start);
    }
  }
}

}  // namespace

std::string Utf8Stream::push(std::string_view bytes) {
  pending_.append(bytes);
  // The held-back tail starts at the last lead byte among the final three bytes, if those bytes
  // form an incomplete sequence.
  size_t keep_from = pending_.size();
  for (size_t back = 1; back <= 3 && back <= pending_.size(); ++back) {
    const size_t start = pending_.size() - back;
    if ((static_cast<uint8_t>(pending_[start]) & 0xC0) == 0x80) continue;  // continuation byte
    if (unicode::is_incomplete_utf8(std::string_view(pending_).substr(start))) keep_from = start;
    break;
  }
  std::string out;
  append_sanitized(std::string_view(pending_).substr(0, keep_from), out);
  pending_.erase(0, keep_from);
  return out;
}

std::string Utf8Stream::flush() {
  std::string out;
  append_sanitized(pending_, out);
  pending_.clear();
  return out;
}

std::string Utf8Stream::take_incomplete() {
  std::string out;
  out.swap(pending_);
  return out;
}

}  // namespace edgeinf
