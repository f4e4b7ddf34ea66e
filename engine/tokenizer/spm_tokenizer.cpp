// SentencePiece-style tokenizer (GGUF tokenizer.ggml.model = "llama"): spaces become "▁", then
// adjacent symbols merge highest token score first; leftover characters fall back to <0xAB> bytes.
#include <algorithm>
#include <array>
#include <cstdio>
#include <queue>
#include <string>

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/tokenizer_model.h"
#include "engine/tokenizer/unicode.h"

namespace edgeinf {
namespace {

constexpr std::string_view kSpaceMarker = "\xE2\x96\x81";  // U+2581 LOWER ONE EIGHTH BLOCK

// The byte value of a "<0xAB>" token text, or -1 for any other text.
int parse_byte_token(std::string_view text) {
  if (text.size() != 6 || !text.starts_with("<0x") || text.back() != '>') return -1;
  int value = 0;
  for (char c : text.substr(3, 2)) {
    int digit = -1;
    if (c >= '0' && c <= '9') digit = c - '0';
    if (c >= 'A' && c <= 'F') digit = c - 'A' + 10;
    if (c >= 'a' && c <= 'f') digit = c - 'a' + 10;
    if (digit < 0) return -1;
    value = value * 16 + digit;
  }
  return value;
}

class SpmModel final : public TokenizerModel {
 public:
  SpmModel(const TokenizerVocab& vocab, const TokenIndex& index) : vocab_(vocab), index_(index) {}

  Status init();
  void encode(std::string_view text, bool after_special, std::vector<TokenId>& out) const override;
  std::string piece(TokenId id) const override;

 private:
  // Bytes [begin, begin + size) of the escaped text; size 0 once merged into its left neighbour.
  struct Symbol {
    size_t begin;
    size_t size;
    int prev;
    int next;
  };
  // Merging symbols[left] with its right neighbour gives a token of `score`; stale once either
  // symbol changed, which shows as a different combined size.
  struct Bigram {
    float score;
    int left;
    int right;
    size_t size;
    bool operator<(const Bigram& other) const { return score != other.score ? score < other.score : left > other.left; }
  };

  void try_add_bigram(const std::string& text, const std::vector<Symbol>& symbols, int left, int right,
                      std::priority_queue<Bigram>& queue) const;

  const TokenizerVocab& vocab_;
  const TokenIndex& index_;
  std::array<TokenId, 256> byte_tokens_{};  // <0xAB> token per byte, or -1
};

Status SpmModel::init() {
  if (vocab_.scores.size() != vocab_.tokens.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("SentencePiece vocabulary needs one tokenizer.ggml.scores entry per token: ", vocab_.scores.size(),
                     " scores for ", vocab_.tokens.size(), " tokens"));
  }
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    const auto it = index_.find(std::string_view(name));
    byte_tokens_[b] = it == index_.end() ? -1 : it->second;
  }
  return absl::OkStatus();
}

void SpmModel::try_add_bigram(const std::string& text, const std::vector<Symbol>& symbols, int left, int right,
                              std::priority_queue<Bigram>& queue) const {
  if (left < 0 || right < 0) return;
  const size_t begin = symbols[left].begin;
  const size_t size = symbols[left].size + symbols[right].size;
  const auto it = index_.find(std::string_view(text).substr(begin, size));
  if (it == index_.end()) return;
  queue.push({vocab_.scores[it->second], left, right, size});
}

void SpmModel::encode(std::string_view text, bool after_special, std::vector<TokenId>& out) const {
  std::string escaped;
  escaped.reserve(text.size() + 4);
  if (vocab_.add_space_prefix && after_special) escaped += kSpaceMarker;
  for (char c : text) {
    if (c == ' ') {
      escaped += kSpaceMarker;
    } else {
      escaped.push_back(c);
    }
  }
  if (escaped.empty()) return;

  std::vector<Symbol> symbols;
  for (size_t pos = 0; pos < escaped.size();) {
    // A malformed lead byte, or a sequence cut short by the end, makes a shorter symbol; it then
    // falls back to byte tokens.
    const size_t length =
        std::min<size_t>(std::max(unicode::utf8_sequence_length(escaped[pos]), 1), escaped.size() - pos);
    const int index = static_cast<int>(symbols.size());
    symbols.push_back({pos, length, index - 1, -1});
    if (index > 0) symbols[index - 1].next = index;
    pos += length;
  }

  std::priority_queue<Bigram> queue;
  for (int i = 1; i < static_cast<int>(symbols.size()); ++i) {
    try_add_bigram(escaped, symbols, i - 1, i, queue);
  }
  while (!queue.empty()) {
    const Bigram bigram = queue.top();
    queue.pop();
    Symbol& left = symbols[bigram.left];
    Symbol& right = symbols[bigram.right];
    if (left.size == 0 || right.size == 0 || left.size + right.size != bigram.size) continue;
    left.size += right.size;
    right.size = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = bigram.left;
    try_add_bigram(escaped, symbols, left.prev, bigram.left, queue);
    try_add_bigram(escaped, symbols, bigram.left, left.next, queue);
  }

  // Every merged symbol is a token by construction; single characters may not be.
  for (int i = 0; i >= 0; i = symbols[i].next) {
    const Symbol& symbol = symbols[i];
    const std::string_view part = std::string_view(escaped).substr(symbol.begin, symbol.size);
    const auto it = index_.find(part);
    if (it != index_.end()) {
      out.push_back(it->second);
      continue;
    }
    for (char c : part) {
      const TokenId byte_token = byte_tokens_[static_cast<uint8_t>(c)];
      if (byte_token >= 0) {
        out.push_back(byte_token);
      } else if (vocab_.unk >= 0) {
        out.push_back(vocab_.unk);
      }
    }
  }
}

std::string SpmModel::piece(TokenId id) const {
  const std::string& text = vocab_.tokens[id];
  const bool is_byte = !vocab_.token_types.empty() && vocab_.token_types[id] == 6;
  if (is_byte) {
    if (const int byte = parse_byte_token(text); byte >= 0) return std::string(1, static_cast<char>(byte));
  }
  std::string bytes;
  bytes.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    if (std::string_view(text).substr(pos, kSpaceMarker.size()) == kSpaceMarker) {
      bytes.push_back(' ');
      pos += kSpaceMarker.size();
    } else {
      bytes.push_back(text[pos++]);
    }
  }
  return bytes;
}

}  // namespace

StatusOr<std::unique_ptr<TokenizerModel>> make_spm_model(const TokenizerVocab& vocab, const TokenIndex& index) {
  auto model = std::make_unique<SpmModel>(vocab, index);
  EDGEINF_RETURN_IF_ERROR(model->init());
  return std::unique_ptr<TokenizerModel>(std::move(model));
}

}  // namespace edgeinf
