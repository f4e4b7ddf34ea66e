// Streaming detokenization: token pieces are arbitrary byte chunks (an emoji may span several
// byte tokens); Utf8Stream releases only complete UTF-8 characters.
#pragma once

#include <string>
#include <string_view>

namespace edgeinf {

class Utf8Stream {
 public:
  // Appends bytes; returns the complete characters now available. A trailing sequence that more
  // bytes could still complete is held back; malformed bytes become U+FFFD (one per maximal
  // ill-formed subpart, as the Unicode standard recommends).
  std::string push(std::string_view bytes);
  // Returns what is held back, an incomplete sequence as U+FFFD, and resets the stream.
  std::string flush();
  // Returns the held-back bytes as they are (the start of a character that more bytes would
  // complete) and resets the stream.
  std::string take_incomplete();
  // Bytes held back by the last push(), 0..3.
  size_t pending_size() const { return pending_.size(); }

 private:
  std::string pending_;
};

}  // namespace edgeinf
