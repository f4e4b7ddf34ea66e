// Stop strings over streamed text: text that might be the start of a stop string is held back
// until it is known not to be, so a client never sees part of a stop string.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace edgeinf {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);

  // Appends generated text; returns the text that is safe to emit now. After a match, stopped()
  // is true and the returned text ends just before the stop string.
  std::string push(std::string_view text);
  // Text still held back (emit it when generation ends without a match).
  std::string flush();
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string pending_;
  bool stopped_ = false;
};

}  // namespace edgeinf
