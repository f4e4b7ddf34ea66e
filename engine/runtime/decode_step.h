// The decode step of a turn, for the CLI's generation loop and the service's scheduler alike:
// samples a token from the logits, counts it, turns it into text that is final (whole UTF-8
// characters, possible stop-string prefixes held back) and says whether the turn ends with it.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <vector>

#include "engine/sampling/sampler.h"
#include "engine/sampling/stop_matcher.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/utf8_stream.h"

namespace edgeinf {

// What a turn asks of generation.
struct GenerateOptions {
  SamplingParams sampling;
  int max_tokens = 256;
  std::vector<std::string> stop;  // stop strings; matched text is not emitted
  bool ignore_eos = false;
};

enum class FinishReason { kLength, kEndOfGeneration, kStopString, kContextFull, kCancelled };
const char* finish_reason_name(FinishReason r);

class DecodeStep {
 public:
  // The options' sampling parameters must be valid (validate() in sampler.h).
  DecodeStep(const Tokenizer& tokenizer, const GenerateOptions& options);

  // A token of the input (history, prompt): the sampler's penalties see it.
  void accept(TokenId token) { sampler_.accept(token); }

  struct Token {
    TokenId id = -1;
    // Text that became final with this token, and the generated tokens it completes (a character
    // may span several tokens; their ids wait until its text is final).
    std::string text;
    std::vector<TokenId> ids;
    // Set when the turn ends with this token. An end-of-generation token ends it without text (it
    // still counts as generated: it stays in a session's history).
    std::optional<FinishReason> finish;
  };
  // Samples the next token from logits [n_vocab]. context_has_room: whether the context can take
  // the token as input (otherwise the turn ends, kContextFull, unless it ends for another reason).
  // Call only while done() is false.
  Token next(std::span<const float> logits, bool context_has_room);
  // Whether the turn has nothing left to generate (max_tokens reached).
  bool done() const { return generated_ >= max_tokens_; }

  // The end of a turn that did not stop on a stop string: the text still held back and the ids
  // with it. keep_incomplete: a character cut at the end goes to *incomplete as its raw bytes
  // instead of becoming U+FFFD.
  Token flush(bool keep_incomplete, std::string* incomplete);

  int generated() const { return generated_; }

 private:
  const Tokenizer& tokenizer_;
  Sampler sampler_;
  StopMatcher stops_;
  Utf8Stream utf8_;
  std::vector<TokenId> held_ids_;
  int max_tokens_ = 0;
  bool ignore_eos_ = false;
  int generated_ = 0;
};

}  // namespace edgeinf
