// Tokenizer: vocabulary validation and loading from GGUF, special-token partitioning of the input,
// and decoding; the BPE / SentencePiece algorithms live behind TokenizerModel.
#include "engine/tokenizer/tokenizer.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/model/gguf.h"
#include "engine/tokenizer/tokenizer_model.h"

namespace edgeinf {
namespace {

// Control tokens that end a turn in common chat formats; they count as end of generation.
constexpr std::string_view kEogTexts[] = {
    "<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<|endoftext|>", "<|eom_id|>", "<end_of_turn>", "<|end|>",
};

bool is_special_attr(TokenAttr attr) {
  return attr == TokenAttr::kControl || attr == TokenAttr::kUserDefined || attr == TokenAttr::kUnknown;
}

// Reads an optional special-token id; values outside the vocabulary are an error.
Status read_token_id(const GgufFile& gguf, std::string_view key, size_t n_vocab, TokenId& id) {
  if (gguf.find(key) == nullptr) return absl::OkStatus();
  EDGEINF_ASSIGN_OR_RETURN(const int64_t value, gguf.get_int(key));
  if (value < 0 || static_cast<uint64_t>(value) >= n_vocab) {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(key), " = ", value, " is outside the vocabulary of ", n_vocab, " tokens"));
  }
  id = static_cast<TokenId>(value);
  return absl::OkStatus();
}

}  // namespace

Tokenizer::Tokenizer(TokenizerVocab vocab) : vocab_(std::move(vocab)) {}
Tokenizer::~Tokenizer() = default;

StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::from_gguf(const GgufFile& gguf) {
  TokenizerVocab vocab;
  EDGEINF_ASSIGN_OR_RETURN(vocab.model, gguf.get_string("tokenizer.ggml.model"));
  vocab.pre = gguf.get_string_or("tokenizer.ggml.pre", "default");
  EDGEINF_ASSIGN_OR_RETURN(const std::vector<std::string>* tokens, gguf.get_string_array("tokenizer.ggml.tokens"));
  vocab.tokens = *tokens;
  if (gguf.find("tokenizer.ggml.scores") != nullptr) {
    EDGEINF_ASSIGN_OR_RETURN(const std::vector<double>* scores, gguf.get_float_array("tokenizer.ggml.scores"));
    vocab.scores.assign(scores->begin(), scores->end());
  }
  if (gguf.find("tokenizer.ggml.token_type") != nullptr) {
    EDGEINF_ASSIGN_OR_RETURN(const std::vector<int64_t>* types, gguf.get_int_array("tokenizer.ggml.token_type"));
    vocab.token_types.assign(types->begin(), types->end());
  }
  if (gguf.find("tokenizer.ggml.merges") != nullptr) {
    EDGEINF_ASSIGN_OR_RETURN(const std::vector<std::string>* merges, gguf.get_string_array("tokenizer.ggml.merges"));
    vocab.merges = *merges;
  }
  const size_t n_vocab = vocab.tokens.size();
  EDGEINF_RETURN_IF_ERROR(read_token_id(gguf, "tokenizer.ggml.bos_token_id", n_vocab, vocab.bos));
  EDGEINF_RETURN_IF_ERROR(read_token_id(gguf, "tokenizer.ggml.eos_token_id", n_vocab, vocab.eos));
  EDGEINF_RETURN_IF_ERROR(read_token_id(gguf, "tokenizer.ggml.unknown_token_id", n_vocab, vocab.unk));
  EDGEINF_RETURN_IF_ERROR(read_token_id(gguf, "tokenizer.ggml.eot_token_id", n_vocab, vocab.eot));
  // Some converters write a padding id just past the vocabulary; padding is never encoded, so an
  // out-of-range value is dropped rather than rejected.
  if (!read_token_id(gguf, "tokenizer.ggml.padding_token_id", n_vocab, vocab.pad).ok()) {
    vocab.pad = -1;
  }
  const bool is_spm = vocab.model == "llama";
  vocab.add_bos = gguf.get_bool_or("tokenizer.ggml.add_bos_token", is_spm);
  vocab.add_eos = gguf.get_bool_or("tokenizer.ggml.add_eos_token", false);
  vocab.add_space_prefix = gguf.get_bool_or("tokenizer.ggml.add_space_prefix", is_spm);
  vocab.chat_template = gguf.get_string_or("tokenizer.chat_template", "");
  return from_vocab(std::move(vocab));
}

StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::from_vocab(TokenizerVocab vocab) {
  std::unique_ptr<Tokenizer> tokenizer(new Tokenizer(std::move(vocab)));
  EDGEINF_RETURN_IF_ERROR(tokenizer->init());
  return tokenizer;
}

Status Tokenizer::init() {
  const size_t n_vocab = vocab_.tokens.size();
  if (vocab_.model != "gpt2" && vocab_.model != "llama") {
    return absl::InvalidArgumentError(
        absl::StrCat("unsupported tokenizer model '", vocab_.model, "' (tokenizer.ggml.model)"));
  }
  if (n_vocab == 0) return absl::InvalidArgumentError("tokenizer.ggml.tokens is empty");
  if (!vocab_.scores.empty() && vocab_.scores.size() != n_vocab) {
    return absl::InvalidArgumentError(
        absl::StrCat("tokenizer.ggml.scores has ", vocab_.scores.size(), " entries for ", n_vocab, " tokens"));
  }
  if (!vocab_.token_types.empty() && vocab_.token_types.size() != n_vocab) {
    return absl::InvalidArgumentError(
        absl::StrCat("tokenizer.ggml.token_type has ", vocab_.token_types.size(), " entries for ", n_vocab, " tokens"));
  }
  const std::pair<const char*, TokenId> special_ids[] = {
      {"bos", vocab_.bos}, {"eos", vocab_.eos}, {"unk", vocab_.unk}, {"pad", vocab_.pad}, {"eot", vocab_.eot}};
  for (const auto& [name, id] : special_ids) {
    if (id < -1 || id >= static_cast<TokenId>(n_vocab)) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, " token id ", id, " is outside the vocabulary of ", n_vocab, " tokens"));
    }
  }

  attrs_.assign(n_vocab, TokenAttr::kNormal);
  for (size_t id = 0; id < vocab_.token_types.size(); ++id) {
    const int32_t type = vocab_.token_types[id];
    if (type < 0 || type > 6) {
      return absl::InvalidArgumentError(
          absl::StrCat("tokenizer.ggml.token_type[", id, "] = ", type, " is not in 0..6"));
    }
    // GGUF: 0 undefined, 1 normal, 2 unknown, 3 control, 4 user defined, 5 unused, 6 byte.
    constexpr TokenAttr kByType[] = {TokenAttr::kNormal,  TokenAttr::kNormal,      TokenAttr::kUnknown,
                                     TokenAttr::kControl, TokenAttr::kUserDefined, TokenAttr::kUnused,
                                     TokenAttr::kByte};
    attrs_[id] = kByType[type];
  }

  token_to_id_.reserve(n_vocab);
  for (size_t id = 0; id < n_vocab; ++id) {
    token_to_id_[vocab_.tokens[id]] = static_cast<TokenId>(id);
  }

  specials_by_byte_.assign(256, {});
  for (size_t id = 0; id < n_vocab; ++id) {
    if (!is_special_attr(attrs_[id]) || vocab_.tokens[id].empty()) continue;
    specials_by_byte_[static_cast<uint8_t>(vocab_.tokens[id][0])].push_back(static_cast<TokenId>(id));
  }
  for (std::vector<TokenId>& bucket : specials_by_byte_) {
    std::stable_sort(bucket.begin(), bucket.end(),
                     [&](TokenId a, TokenId b) { return vocab_.tokens[a].size() > vocab_.tokens[b].size(); });
  }

  for (TokenId id : {vocab_.eos, vocab_.eot}) {
    if (id >= 0) eog_ids_.push_back(id);
  }
  for (std::string_view text : kEogTexts) {
    const auto it = token_to_id_.find(text);
    if (it == token_to_id_.end()) continue;
    const TokenAttr attr = attrs_[it->second];
    if (attr == TokenAttr::kControl || attr == TokenAttr::kUserDefined) {
      eog_ids_.push_back(it->second);
    }
  }

  if (vocab_.model == "gpt2") {
    EDGEINF_ASSIGN_OR_RETURN(model_, make_bpe_model(vocab_, token_to_id_));
  } else {
    EDGEINF_ASSIGN_OR_RETURN(model_, make_spm_model(vocab_, token_to_id_));
    strip_space_prefix_ = vocab_.add_space_prefix;
  }

  pieces_.resize(n_vocab);
  for (size_t id = 0; id < n_vocab; ++id) {
    pieces_[id] = is_special_attr(attrs_[id]) ? vocab_.tokens[id] : model_->piece(static_cast<TokenId>(id));
  }
  return absl::OkStatus();
}

TokenId Tokenizer::match_special(std::string_view text, size_t pos, bool parse_special) const {
  for (TokenId id : specials_by_byte_[static_cast<uint8_t>(text[pos])]) {
    if (!parse_special && attrs_[id] != TokenAttr::kUserDefined) continue;
    if (text.substr(pos).starts_with(vocab_.tokens[id])) return id;
  }
  return -1;
}

void Tokenizer::encode_text(std::string_view text, bool parse_special, std::vector<TokenId>& out) const {
  bool after_special = true;
  size_t fragment_begin = 0;
  for (size_t pos = 0; pos < text.size();) {
    const TokenId special = match_special(text, pos, parse_special);
    if (special < 0) {
      ++pos;
      continue;
    }
    if (fragment_begin < pos) {
      model_->encode(text.substr(fragment_begin, pos - fragment_begin), after_special, out);
    }
    out.push_back(special);
    after_special = true;
    pos += vocab_.tokens[special].size();
    fragment_begin = pos;
  }
  if (fragment_begin < text.size()) {
    model_->encode(text.substr(fragment_begin), after_special, out);
  }
}

std::vector<TokenId> Tokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
  std::vector<TokenId> out;
  out.reserve(text.size() / 3 + 2);
  if (add_special && vocab_.add_bos && vocab_.bos >= 0) out.push_back(vocab_.bos);
  encode_text(text, parse_special, out);
  if (add_special && vocab_.add_eos && vocab_.eos >= 0) out.push_back(vocab_.eos);
  return out;
}

std::string Tokenizer::token_to_piece(TokenId id) const {
  if (id < 0 || id >= n_vocab()) return {};
  return pieces_[id];
}

std::string Tokenizer::decode(std::span<const TokenId> ids) const {
  std::string text;
  bool after_special = true;
  for (TokenId id : ids) {
    if (id < 0 || id >= n_vocab()) continue;
    const std::string& piece = pieces_[id];
    if (is_special_attr(attrs_[id])) {
      text += piece;
      after_special = true;
      continue;
    }
    const bool strip = strip_space_prefix_ && after_special && piece.starts_with(' ');
    text.append(piece, strip ? 1 : 0);
    after_special = false;
  }
  return text;
}

TokenAttr Tokenizer::attr(TokenId id) const {
  if (id < 0 || id >= n_vocab()) return TokenAttr::kUnused;
  return attrs_[id];
}

bool Tokenizer::is_eog(TokenId id) const {
  return id >= 0 && std::find(eog_ids_.begin(), eog_ids_.end(), id) != eog_ids_.end();
}

std::optional<TokenId> Tokenizer::find_token(std::string_view text) const {
  const auto it = token_to_id_.find(text);
  if (it == token_to_id_.end()) return std::nullopt;
  return it->second;
}

}  // namespace edgeinf
