// Regex pre-tokenizers of byte-level BPE vocabularies, chosen by GGUF `tokenizer.ggml.pre` and
// matched by hand (no std::regex): they split text into the words that BPE merges inside.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/util/status.h"

namespace edgeinf {

// Byte offsets [begin, end) of one pre-token word inside the text that was split.
struct TextSpan {
  size_t begin = 0;
  size_t end = 0;
};

class Pretokenizer {
 public:
  // Resolves a GGUF pre-tokenizer name: "default"/"gpt2"/"gpt-2" (the GPT-2 regex),
  // "smollm"/"starcoder"/"refact" (digits split one by one, then GPT-2), "llama3"/"llama-bpe"/
  // "llama-v3"/"dbrx"/"smaug-bpe" (Llama-3 regex, up to 3 digits), "qwen2"/"deepseek-r1-qwen"
  // (Llama-3 regex, single digits). An empty name means "default". Other names: InvalidArgument
  // naming the pre-tokenizer.
  static StatusOr<Pretokenizer> from_name(std::string_view name);

  // Appends the words of `text` to `words`, in order; together they cover `text` exactly. Bytes
  // that are not valid UTF-8 are classed as punctuation-like "other" characters.
  void split(std::string_view text, std::vector<TextSpan>& words) const;

  // True when BPE should emit a word that is itself a vocabulary token without merging it
  // (HF `ignore_merges`, set by the Llama-3 tokenizer).
  bool ignore_merges() const { return ignore_merges_; }
  const std::string& name() const { return name_; }

  // One pass of a pre-tokenizer: each pass splits every piece the previous pass produced.
  enum class Pass : uint8_t {
    kIndividualDigits,  // every \p{N} codepoint becomes its own piece
    kGpt2,              // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
    kLlama3,            // (?i:'s|..|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
                        //   \s*[\r\n]+|\s+(?!\S)|\s+
    kQwen2,             // kLlama3 with \p{N} instead of \p{N}{1,3}
  };

 private:
  Pretokenizer(std::string name, std::vector<Pass> passes, bool ignore_merges)
      : name_(std::move(name)), passes_(std::move(passes)), ignore_merges_(ignore_merges) {}

  std::string name_;
  std::vector<Pass> passes_;
  bool ignore_merges_ = false;
};

}  // namespace edgeinf
