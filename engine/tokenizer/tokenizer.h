// Text <-> token ids for GGUF vocabularies: byte-level BPE ("gpt2") and SentencePiece-style
// ("llama"), with special-token parsing and decoding back to bytes.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "engine/util/status.h"
#include "engine/util/token_id.h"

namespace edgeinf {

class GgufFile;
class TokenizerModel;

// Transparent string hashing: a std::string_view finds a std::string key without a copy.
struct TextHash {
  using is_transparent = void;
  size_t operator()(std::string_view text) const { return std::hash<std::string_view>{}(text); }
};
struct TextEq {
  using is_transparent = void;
  bool operator()(std::string_view a, std::string_view b) const { return a == b; }
};
// Token text -> id (when texts repeat, the last id wins, as in llama.cpp).
using TokenIndex = absl::flat_hash_map<std::string, TokenId, TextHash, TextEq>;

// Token kinds, from GGUF `tokenizer.ggml.token_type` values 1..6 (0 or absent reads as kNormal).
enum class TokenAttr : uint8_t { kNormal, kControl, kUserDefined, kByte, kUnknown, kUnused };

// Everything a tokenizer needs, filled from GGUF `tokenizer.ggml.*` keys or by tests.
struct TokenizerVocab {
  std::string model;  // "gpt2" (byte-level BPE) or "llama" (SentencePiece-style)
  std::string pre;    // pre-tokenizer name for "gpt2", see Pretokenizer::from_name
  std::vector<std::string> tokens;
  std::vector<float> scores;         // "llama": merge priority per token; may be empty for "gpt2"
  std::vector<int32_t> token_types;  // GGUF token types 1..6, one per token; empty = all normal
  std::vector<std::string> merges;   // "gpt2": "left right" pairs, highest priority first
  TokenId bos = -1, eos = -1, unk = -1, pad = -1, eot = -1;  // -1 = the vocabulary has none
  bool add_bos = false;
  bool add_eos = false;
  bool add_space_prefix = true;  // "llama" only: prepend a space to the text, as SentencePiece does
  std::string chat_template;
};

class Tokenizer {
 public:
  // Reads tokenizer.ggml.{model,pre,tokens,scores,token_type,merges,*_token_id,add_bos_token,
  // add_eos_token,add_space_prefix} and tokenizer.chat_template. Missing required keys or
  // inconsistent arrays: InvalidArgument/NotFound naming the key.
  static StatusOr<std::unique_ptr<Tokenizer>> from_gguf(const GgufFile& gguf);
  // Validates the vocabulary (known model and pre-tokenizer, array sizes, special ids in range).
  static StatusOr<std::unique_ptr<Tokenizer>> from_vocab(TokenizerVocab vocab);

  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // Encodes text; thread-safe. add_special: prepend BOS / append EOS when the vocabulary asks
  // for them. parse_special: control tokens written literally in the text (e.g. "<|im_start|>")
  // become their ids; user-defined tokens are always matched, as in llama.cpp.
  std::vector<TokenId> encode(std::string_view text, bool add_special, bool parse_special) const;

  // Raw bytes of one token, possibly part of a UTF-8 character; control, user-defined and
  // unknown tokens render as their text. Out-of-range ids give "".
  std::string token_to_piece(TokenId id) const;
  // Concatenated pieces. For "llama" with add_space_prefix, the space that encode() inserts at the
  // start of the text and after each special token is removed again, so that
  // decode(encode(x, false, true)) == x.
  std::string decode(std::span<const TokenId> ids) const;

  int n_vocab() const { return static_cast<int>(vocab_.tokens.size()); }
  TokenId bos() const { return vocab_.bos; }
  TokenId eos() const { return vocab_.eos; }
  TokenId eot() const { return vocab_.eot; }
  TokenId unk() const { return vocab_.unk; }
  bool add_bos() const { return vocab_.add_bos; }
  TokenAttr attr(TokenId id) const;  // kUnused for out-of-range ids
  // End of generation: eos, eot, and control tokens that end a turn in known chat formats
  // ("<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<|endoftext|>", "<|eom_id|>",
  // "<end_of_turn>", "<|end|>").
  bool is_eog(TokenId id) const;
  const std::string& chat_template() const { return vocab_.chat_template; }
  const TokenizerVocab& vocab() const { return vocab_; }
  std::optional<TokenId> find_token(std::string_view text) const;

 private:
  explicit Tokenizer(TokenizerVocab vocab);
  Status init();
  // Splits text at special tokens; plain runs go through the model, special tokens are appended.
  void encode_text(std::string_view text, bool parse_special, std::vector<TokenId>& out) const;
  // Longest special token that may be matched at text[pos], or -1.
  TokenId match_special(std::string_view text, size_t pos, bool parse_special) const;

  TokenizerVocab vocab_;
  std::vector<TokenAttr> attrs_;
  TokenIndex token_to_id_;
  std::vector<std::string> pieces_;  // token_to_piece for every id
  // Control, user-defined and unknown tokens by first byte, longest first.
  std::vector<std::vector<TokenId>> specials_by_byte_;
  std::vector<TokenId> eog_ids_;
  bool strip_space_prefix_ = false;  // "llama" with add_space_prefix
  std::unique_ptr<TokenizerModel> model_;
};

}  // namespace edgeinf
