// Checks the tokenizer of a real GGUF model against the HF `tokenizers` reference ids written by
// tests/reference/tokenizer_ref.py (EDGEINF_MODEL, EDGEINF_TOKENIZER_REF), plus round trips,
// streaming detokenization and chat-template rendering on the same corpus.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

// Built outside CMake there are no configured paths: only the environment names the files.
#ifndef EDGEINF_TEST_MODEL_PATH
#define EDGEINF_TEST_MODEL_PATH ""
#endif
#ifndef EDGEINF_TEST_GOLDEN_DIR
#define EDGEINF_TEST_GOLDEN_DIR ""
#endif

#include "engine/model/gguf.h"
#include "engine/tokenizer/chat_template.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/unicode.h"
#include "engine/tokenizer/utf8_stream.h"
#include "gtest/gtest.h"
#include "tests/test_paths.h"

namespace edgeinf {
namespace {

struct RefDoc {
  int index = -1;
  std::string text;
  std::vector<TokenId> special;  // special-token text parsed
  std::vector<TokenId> plain;    // special-token text encoded as text
  std::string decoded;           // HF decode of `special`: text less bytes the vocabulary lacks
};

struct RefChat {
  int index = -1;
  bool add_generation_prompt = false;
  std::vector<ChatMessage> messages;
  std::string rendered;
};

struct Reference {
  std::vector<RefDoc> docs;
  std::vector<RefChat> chats;
};

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// Lowercase hex, as tokenizer_ref.py writes it.
bool hex_decode(const std::string& hex, std::string& out) {
  if (hex.size() % 2 != 0) return false;
  out.clear();
  for (size_t i = 0; i < hex.size(); i += 2) {
    const int high = hex_digit(hex[i]);
    const int low = hex_digit(hex[i + 1]);
    if (high < 0 || low < 0) return false;
    out.push_back(static_cast<char>(high * 16 + low));
  }
  return true;
}

// Reads the file format documented in tests/reference/tokenizer_ref.py; "" on success.
std::string read_reference(const std::string& path, Reference& ref) {
  std::ifstream in(path);
  if (!in) return "cannot open " + path;
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    std::string kind;
    fields >> kind;
    const std::string where = path + ":" + std::to_string(line_no);
    if (kind == "doc") {
      ref.docs.emplace_back();
      fields >> ref.docs.back().index;
    } else if (kind == "chat") {
      ref.chats.emplace_back();
      int add = 0;
      fields >> ref.chats.back().index >> add;
      ref.chats.back().add_generation_prompt = add != 0;
    } else if (kind == "text" || kind == "special" || kind == "plain" || kind == "decoded") {
      if (ref.docs.empty()) return where + ": '" + kind + "' before any 'doc'";
      RefDoc& doc = ref.docs.back();
      if (kind == "text" || kind == "decoded") {
        std::string hex;
        fields >> hex;
        if (!hex_decode(hex, kind == "text" ? doc.text : doc.decoded)) return where + ": bad hex";
      } else {
        std::vector<TokenId>& ids = kind == "special" ? doc.special : doc.plain;
        TokenId id = 0;
        while (fields >> id) ids.push_back(id);
      }
    } else if (kind == "message" || kind == "rendered") {
      if (ref.chats.empty()) return where + ": '" + kind + "' before any 'chat'";
      RefChat& chat = ref.chats.back();
      std::string first, second;
      fields >> first >> second;
      if (kind == "message") {
        ChatMessage message{first, ""};
        if (!hex_decode(second, message.content)) return where + ": bad hex";
        chat.messages.push_back(std::move(message));
      } else if (!hex_decode(first, chat.rendered)) {
        return where + ": bad hex";
      }
    } else {
      return where + ": unknown record '" + kind + "'";
    }
  }
  if (ref.docs.empty()) return path + ": no documents";
  return "";
}

std::string ids_to_string(const std::vector<TokenId>& ids, size_t from, size_t count) {
  std::string out;
  for (size_t i = from; i < ids.size() && i < from + count; ++i) {
    out += std::to_string(ids[i]) + " ";
  }
  return out;
}

// Empty when equal; otherwise where and how `got` first differs from `want`.
std::string first_difference(const Tokenizer& tokenizer, const std::vector<TokenId>& want,
                             const std::vector<TokenId>& got) {
  size_t i = 0;
  while (i < want.size() && i < got.size() && want[i] == got[i]) ++i;
  if (i == want.size() && i == got.size()) return "";
  const size_t from = i >= 3 ? i - 3 : 0;
  std::string message = "first difference at index " + std::to_string(i) + " (reference " +
                        std::to_string(want.size()) + " ids, got " + std::to_string(got.size()) + ")\n  reference[" +
                        std::to_string(from) + "..]: " + ids_to_string(want, from, 8) + "\n  got      [" +
                        std::to_string(from) + "..]: " + ids_to_string(got, from, 8);
  if (i < want.size()) message += "\n  reference token: '" + tokenizer.token_to_piece(want[i]) + "'";
  if (i < got.size()) message += "\n  got token:       '" + tokenizer.token_to_piece(got[i]) + "'";
  return message;
}

class TokenizerGoldenTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // Environment first (EDGEINF_MODEL, EDGEINF_TOKENIZER_REF), then the configured paths.
    const std::string model_path = testing::test_model_path();
    const std::string ref_path = testing::tokenizer_ref_path();
    if (model_path.empty()) return;
    configured_ = true;
    auto gguf = GgufFile::open(model_path);
    if (!gguf.ok()) {
      setup_error_ = "GgufFile::open: " + gguf.status().ToString();
      return;
    }
    auto tokenizer = Tokenizer::from_gguf(**gguf);
    if (!tokenizer.ok()) {
      setup_error_ = "Tokenizer::from_gguf: " + tokenizer.status().ToString();
      return;
    }
    tokenizer_ = std::move(*tokenizer).release();
    reference_ = new Reference();
    setup_error_ = read_reference(ref_path, *reference_);
    if (!setup_error_.empty()) {
      setup_error_ += " (write it with: python tests/reference/tokenizer_ref.py --model " + model_path +
                      " --corpus tests/reference/tokenizer_corpus.txt --out " + ref_path + ")";
    }
  }

  static void TearDownTestSuite() {
    delete tokenizer_;
    tokenizer_ = nullptr;
    delete reference_;
    reference_ = nullptr;
  }

  void SetUp() override {
    if (!configured_) {
      GTEST_SKIP() << "no model: set EDGEINF_MODEL (a GGUF file) and EDGEINF_TOKENIZER_REF "
                      "(written by tests/reference/tokenizer_ref.py for that model)";
    }
    ASSERT_EQ(setup_error_, "");
  }

  static inline bool configured_ = false;
  static inline std::string setup_error_;
  static inline Tokenizer* tokenizer_ = nullptr;
  static inline Reference* reference_ = nullptr;
};

TEST_F(TokenizerGoldenTest, IdsMatchReferenceWithSpecialTokensParsed) {
  for (const RefDoc& doc : reference_->docs) {
    const std::vector<TokenId> got = tokenizer_->encode(doc.text, false, true);
    EXPECT_EQ(first_difference(*tokenizer_, doc.special, got), "")
        << "document " << doc.index << ": \"" << doc.text.substr(0, 60) << "\"";
  }
}

TEST_F(TokenizerGoldenTest, IdsMatchReferenceWithSpecialTokensAsText) {
  for (const RefDoc& doc : reference_->docs) {
    const std::vector<TokenId> got = tokenizer_->encode(doc.text, false, false);
    EXPECT_EQ(first_difference(*tokenizer_, doc.plain, got), "")
        << "document " << doc.index << ": \"" << doc.text.substr(0, 60) << "\"";
  }
}

// What a UTF-8 decoder that replaces malformed sequences (HF's from_utf8_lossy) makes of bytes.
std::string lossy_utf8(std::string_view bytes) {
  Utf8Stream stream;
  return stream.push(bytes) + stream.flush();
}

TEST_F(TokenizerGoldenTest, DecodeMatchesReferenceAndInvertsEncode) {
  for (const RefDoc& doc : reference_->docs) {
    for (bool parse_special : {false, true}) {
      const std::string decoded = tokenizer_->decode(tokenizer_->encode(doc.text, false, parse_special));
      EXPECT_EQ(lossy_utf8(decoded), doc.decoded) << "document " << doc.index << ", parse_special " << parse_special;
      // Lossless wherever the vocabulary covers every byte of the text.
      if (doc.decoded == doc.text) {
        EXPECT_EQ(decoded, doc.text) << "document " << doc.index << ", parse_special " << parse_special;
      }
    }
  }
}

TEST_F(TokenizerGoldenTest, Utf8StreamEmitsOnlyWholeCharacters) {
  int split_characters = 0;  // pushes that had to hold bytes back
  for (const RefDoc& doc : reference_->docs) {
    const std::vector<TokenId> ids = tokenizer_->encode(doc.text, false, true);
    Utf8Stream stream;
    std::string streamed;
    for (TokenId id : ids) {
      const std::string out = stream.push(tokenizer_->token_to_piece(id));
      EXPECT_TRUE(unicode::is_valid_utf8(out)) << "document " << doc.index << ", token " << id;
      if (stream.pending_size() > 0) ++split_characters;
      streamed += out;
    }
    streamed += stream.flush();
    EXPECT_EQ(streamed, tokenizer_->decode(ids)) << "document " << doc.index;
  }
  // The corpus has emoji and CJK text that byte-level BPE splits across tokens.
  EXPECT_GT(split_characters, 0);
}

TEST_F(TokenizerGoldenTest, ChatTemplateMatchesJinjaRendering) {
  // The model has a chat template, so the reference must have rendered it (jinja2 is part of the
  // set-up): no records is a failure, not a reason to skip.
  ASSERT_FALSE(tokenizer_->chat_template().empty());
  ASSERT_FALSE(reference_->chats.empty()) << "the reference has no chat records (is jinja2 installed?)";
  for (const RefChat& chat : reference_->chats) {
    const StatusOr<std::string> rendered =
        apply_chat_template(tokenizer_->chat_template(), chat.messages, chat.add_generation_prompt);
    ASSERT_TRUE(rendered.ok()) << rendered.status();
    EXPECT_EQ(*rendered, chat.rendered) << "conversation " << chat.index;
  }
}

TEST_F(TokenizerGoldenTest, EncodesQuarterMillionTokensQuickly) {
  std::string corpus, corpus_decoded;
  for (const RefDoc& doc : reference_->docs) {
    corpus += doc.text + "\n";
    corpus_decoded += doc.decoded + "\n";
  }
  std::string text, want_decoded;
  while (text.size() < 1000000) {
    text += corpus;
    want_decoded += corpus_decoded;
  }
  const auto start = std::chrono::steady_clock::now();
  const std::vector<TokenId> ids = tokenizer_->encode(text, false, true);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("encoded %zu bytes into %zu tokens in %.3f s (%.0f tokens/s)\n", text.size(), ids.size(), seconds,
              ids.size() / seconds);
  EXPECT_GT(ids.size(), 200000u);
  // Generous bound: catches quadratic behaviour without flaking on a loaded or debug build.
  EXPECT_LT(seconds, 10.0);
  // EXPECT_TRUE: a diff of two megabyte strings would take gtest minutes to print.
  EXPECT_TRUE(lossy_utf8(tokenizer_->decode(ids)) == want_decoded);
}

}  // namespace
}  // namespace edgeinf
