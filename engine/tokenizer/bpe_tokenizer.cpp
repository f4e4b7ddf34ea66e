// Byte-level BPE (GGUF tokenizer.ggml.model = "gpt2"): pre-tokenize, map bytes to the GPT-2
// byte-to-unicode alphabet, then apply merges lowest rank first inside each word.
#include <algorithm>
#include <array>
#include <cstdint>
#include <functional>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "engine/tokenizer/pretokenizer.h"
#include "engine/tokenizer/tokenizer_model.h"
#include "engine/tokenizer/unicode.h"

namespace edgeinf {
namespace {

// GPT-2's reversible byte -> codepoint map: printable Latin-1 bytes map to themselves, the other
// 68 bytes to U+0100.. in byte order, so that every byte is a visible, non-space character.
std::array<uint32_t, 256> byte_to_codepoint_table() {
  std::array<uint32_t, 256> table{};
  uint32_t next = 256;
  for (uint32_t b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    table[b] = printable ? b : next++;
  }
  return table;
}

class BpeModel final : public TokenizerModel {
 public:
  BpeModel(const TokenizerVocab& vocab, const TokenIndex& index, Pretokenizer pretokenizer)
      : vocab_(vocab), index_(index), pretokenizer_(std::move(pretokenizer)) {}

  Status init();
  void encode(std::string_view text, bool after_special, std::vector<TokenId>& out) const override;
  std::string piece(TokenId id) const override;

 private:
  struct Merge {
    int32_t rank;
    TokenId result;
  };
  // A symbol of the word being merged, in a linked list; merged-away symbols get id kDead.
  struct Symbol {
    TokenId id;
    int prev;
    int next;
  };
  // A possible merge of symbols[left] with its right neighbour, valid while both ids still match.
  struct Candidate {
    int32_t rank;
    int left;
    TokenId left_id;
    TokenId right_id;
    TokenId result;
    bool operator>(const Candidate& other) const { return rank != other.rank ? rank > other.rank : left > other.left; }
  };
  // Scratch space reused across the words of one encode() call.
  struct Workspace {
    std::string mapped;
    std::vector<Symbol> symbols;
    std::vector<Candidate> heap;
  };
  static constexpr TokenId kDead = -2;

  static uint64_t pair_key(TokenId left, TokenId right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
  }
  void push_candidate(Workspace& ws, int left) const;
  void encode_word(std::string_view word, Workspace& ws, std::vector<TokenId>& out) const;

  const TokenizerVocab& vocab_;
  const TokenIndex& index_;
  Pretokenizer pretokenizer_;
  std::array<std::string, 256> byte_chars_;  // UTF-8 of each byte's GPT-2 codepoint
  std::array<TokenId, 256> byte_tokens_{};   // token of each single mapped byte, or -1
  absl::flat_hash_map<uint32_t, uint8_t> codepoint_to_byte_;
  absl::flat_hash_map<uint64_t, Merge> merges_;
};

Status BpeModel::init() {
  const std::array<uint32_t, 256> table = byte_to_codepoint_table();
  for (int b = 0; b < 256; ++b) {
    byte_chars_[b] = unicode::encode_utf8(table[b]);
    codepoint_to_byte_[table[b]] = static_cast<uint8_t>(b);
    const auto it = index_.find(byte_chars_[b]);
    byte_tokens_[b] = it == index_.end() ? -1 : it->second;
  }
  if (vocab_.merges.empty()) {
    return absl::InvalidArgumentError("byte-level BPE vocabulary has no tokenizer.ggml.merges");
  }
  merges_.reserve(vocab_.merges.size());
  for (size_t rank = 0; rank < vocab_.merges.size(); ++rank) {
    const std::string& merge = vocab_.merges[rank];
    // The separator is the first space after the first character (a part is never empty).
    const size_t split = merge.find(' ', 1);
    if (split == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("tokenizer.ggml.merges[", rank, "] '", merge, "' has no space"));
    }
    const std::string_view left = std::string_view(merge).substr(0, split);
    const std::string_view right = std::string_view(merge).substr(split + 1);
    const auto left_it = index_.find(left);
    const auto right_it = index_.find(right);
    const auto result_it = index_.find(std::string(left) + std::string(right));
    // Merges over texts that are not tokens can never fire on token ids; HF rejects such
    // vocabularies, llama.cpp skips them: skip.
    if (left_it == index_.end() || right_it == index_.end() || result_it == index_.end()) continue;
    merges_.try_emplace(pair_key(left_it->second, right_it->second),
                        Merge{static_cast<int32_t>(rank), result_it->second});
  }
  return absl::OkStatus();
}

void BpeModel::encode(std::string_view text, bool /*after_special*/, std::vector<TokenId>& out) const {
  std::vector<TextSpan> words;
  pretokenizer_.split(text, words);
  Workspace ws;
  for (const TextSpan& word : words) {
    encode_word(text.substr(word.begin, word.end - word.begin), ws, out);
  }
}

void BpeModel::push_candidate(Workspace& ws, int left) const {
  if (left < 0) return;
  const int right = ws.symbols[left].next;
  if (right < 0) return;
  const TokenId left_id = ws.symbols[left].id;
  const TokenId right_id = ws.symbols[right].id;
  const auto it = merges_.find(pair_key(left_id, right_id));
  if (it == merges_.end()) return;
  ws.heap.push_back({it->second.rank, left, left_id, right_id, it->second.result});
  std::push_heap(ws.heap.begin(), ws.heap.end(), std::greater<Candidate>());
}

void BpeModel::encode_word(std::string_view word, Workspace& ws, std::vector<TokenId>& out) const {
  if (pretokenizer_.ignore_merges()) {
    ws.mapped.clear();
    for (char c : word) ws.mapped += byte_chars_[static_cast<uint8_t>(c)];
    const auto it = index_.find(ws.mapped);
    if (it != index_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  // A byte whose character is not in the vocabulary is dropped before merging, so that its
  // neighbours may merge with each other (HF BPE without an unknown token does the same).
  ws.symbols.clear();
  for (char c : word) {
    const TokenId id = byte_tokens_[static_cast<uint8_t>(c)];
    if (id < 0) continue;
    const int index = static_cast<int>(ws.symbols.size());
    ws.symbols.push_back({id, index - 1, -1});
    if (index > 0) ws.symbols[index - 1].next = index;
  }
  const int n = static_cast<int>(ws.symbols.size());
  ws.heap.clear();
  for (int i = 0; i + 1 < n; ++i) push_candidate(ws, i);
  while (!ws.heap.empty()) {
    std::pop_heap(ws.heap.begin(), ws.heap.end(), std::greater<Candidate>());
    const Candidate top = ws.heap.back();
    ws.heap.pop_back();
    Symbol& left = ws.symbols[top.left];
    if (left.id != top.left_id || left.next < 0) continue;
    Symbol& right = ws.symbols[left.next];
    if (right.id != top.right_id) continue;
    left.id = top.result;
    left.next = right.next;
    if (right.next >= 0) ws.symbols[right.next].prev = top.left;
    right.id = kDead;
    push_candidate(ws, left.prev);
    push_candidate(ws, top.left);
  }
  for (int i = n > 0 ? 0 : -1; i >= 0; i = ws.symbols[i].next) out.push_back(ws.symbols[i].id);
}

std::string BpeModel::piece(TokenId id) const {
  const std::string& text = vocab_.tokens[id];
  std::string bytes;
  bytes.reserve(text.size());
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t start = pos;
    const uint32_t cp = unicode::decode_utf8(text, pos);
    const auto it = codepoint_to_byte_.find(cp);
    if (it != codepoint_to_byte_.end()) {
      bytes.push_back(static_cast<char>(it->second));
    } else {
      bytes.append(text, start, pos - start);  // not from the byte alphabet: keep as written
    }
  }
  return bytes;
}

}  // namespace

StatusOr<std::unique_ptr<TokenizerModel>> make_bpe_model(const TokenizerVocab& vocab, const TokenIndex& index) {
  EDGEINF_ASSIGN_OR_RETURN(Pretokenizer pretokenizer, Pretokenizer::from_name(vocab.pre));
  auto model = std::make_unique<BpeModel>(vocab, index, std::move(pretokenizer));
  EDGEINF_RETURN_IF_ERROR(model->init());
  return std::unique_ptr<TokenizerModel>(std::move(model));
}

}  // namespace edgeinf
