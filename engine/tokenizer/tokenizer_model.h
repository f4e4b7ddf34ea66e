// The per-algorithm half of Tokenizer (byte-level BPE or SentencePiece-style), behind one
// interface; internal to engine/tokenizer. Special tokens never reach a TokenizerModel.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/tokenizer/tokenizer.h"
#include "engine/util/status.h"

namespace edgeinf {

class TokenizerModel {
 public:
  virtual ~TokenizerModel() = default;
  // Appends the ids of a run of plain text; const and thread-safe. `after_special` is true at the
  // start of the input and right after a special token (where SentencePiece adds its space).
  virtual void encode(std::string_view text, bool after_special, std::vector<TokenId>& out) const = 0;
  // Raw bytes of a normal, byte or unused token.
  virtual std::string piece(TokenId id) const = 0;
};

// Both factories keep references to `vocab` and `index`, which must outlive the model.
// Byte-level BPE over GGUF merges with the pre-tokenizer named by vocab.pre.
StatusOr<std::unique_ptr<TokenizerModel>> make_bpe_model(const TokenizerVocab& vocab, const TokenIndex& index);
// SentencePiece-style: score-driven merges of UTF-8 characters, "▁" for spaces, <0xAB> byte
// fallback for characters outside the vocabulary.
StatusOr<std::unique_ptr<TokenizerModel>> make_spm_model(const TokenizerVocab& vocab, const TokenIndex& index);

}  // namespace edgeinf
