// Tokenizer unit tests on hand-made vocabularies (no model file): pre-tokenizer splits, BPE merge
// order, SentencePiece scores and byte fallback, special tokens, UTF-8 handling, chat templates.
#include "engine/tokenizer/tokenizer.h"

#include <algorithm>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "engine/tokenizer/chat_template.h"
#include "engine/tokenizer/pretokenizer.h"
#include "engine/tokenizer/unicode.h"
#include "engine/tokenizer/utf8_stream.h"
#include "gtest/gtest.h"
#include "tests/must.h"

namespace edgeinf {
namespace {

constexpr int32_t kTypeNormal = 1;
constexpr int32_t kTypeUnknown = 2;
constexpr int32_t kTypeControl = 3;
constexpr int32_t kTypeUserDefined = 4;
constexpr int32_t kTypeByte = 6;

// ---------------------------------------------------------------------------------------------
// Pre-tokenizers. Expected splits were produced by HF `tokenizers` with the same regexes.

std::vector<std::string> split(std::string_view name, std::string_view text) {
  const Pretokenizer pretokenizer = testing::must(Pretokenizer::from_name(name), "pretokenizer");
  std::vector<TextSpan> spans;
  pretokenizer.split(text, spans);
  std::vector<std::string> words;
  for (const TextSpan& span : spans) words.emplace_back(text.substr(span.begin, span.end - span.begin));
  return words;
}

using Words = std::vector<std::string>;

TEST(PretokenizerTest, Gpt2) {
  EXPECT_EQ(split("gpt2", "Hello  world's 123\n\n  x"), (Words{"Hello", " ", " world", "'s", " 123", "\n\n ", " x"}));
  EXPECT_EQ(split("default", "I'M ok\tyes\r\n\r\n  end  "),
            (Words{"I", "'", "M", " ok", "\t", "yes", "\r\n\r\n ", " end", "  "}));
  EXPECT_EQ(split("gpt2", "abc 1234567 \xC2\xBDx"), (Words{"abc", " 1234567", " \xC2\xBD", "x"}));
  EXPECT_EQ(split("gpt2", "  foo!!\n\n bar?\n"), (Words{" ", " foo", "!!", "\n\n", " bar", "?", "\n"}));
}

TEST(PretokenizerTest, SmolLmSplitsDigitsFirst) {
  EXPECT_EQ(split("smollm", "Hello  world's 123\n\n  x"),
            (Words{"Hello", " ", " world", "'s", " ", "1", "2", "3", "\n\n ", " x"}));
  EXPECT_EQ(split("smollm", "abc 1234567 \xC2\xBDx"),
            (Words{"abc", " ", "1", "2", "3", "4", "5", "6", "7", " ", "\xC2\xBD", "x"}));
}

TEST(PretokenizerTest, Llama3) {
  EXPECT_EQ(split("llama3", "Hello  world's 123\n\n  x"),
            (Words{"Hello", " ", " world", "'s", " ", "123", "\n\n", " ", " x"}));
  EXPECT_EQ(split("llama-bpe", "I'M ok\tyes\r\n\r\n  end  "),
            (Words{"I", "'M", " ok", "\tyes", "\r\n\r\n", " ", " end", "  "}));
  EXPECT_EQ(split("llama3", "abc 1234567 \xC2\xBDx"), (Words{"abc", " ", "123", "456", "7", " ", "\xC2\xBD", "x"}));
  EXPECT_EQ(split("llama3", "  foo!!\n\n bar?\n"), (Words{" ", " foo", "!!\n\n", " bar", "?\n"}));
}

TEST(PretokenizerTest, Qwen2SplitsSingleDigits) {
  EXPECT_EQ(split("qwen2", "Hello  world's 123\n\n  x"),
            (Words{"Hello", " ", " world", "'s", " ", "1", "2", "3", "\n\n", " ", " x"}));
}

TEST(PretokenizerTest, WordsCoverInvalidUtf8) {
  const std::string text = "ab\xFF\xC3 cd\xE2\x82";
  std::string joined;
  for (const std::string& word : split("gpt2", text)) joined += word;
  EXPECT_EQ(joined, text);
}

TEST(PretokenizerTest, UnknownNameIsAnError) {
  const StatusOr<Pretokenizer> pretokenizer = Pretokenizer::from_name("no-such-pre");
  ASSERT_FALSE(pretokenizer.ok());
  EXPECT_EQ(pretokenizer.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(pretokenizer.status().message().find("no-such-pre"), std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// Byte-level BPE on a tiny vocabulary: the 256 byte characters (token id = byte value), then
// merged tokens.

// GPT-2's byte -> character map, written out independently of bpe_tokenizer.cpp.
std::string gpt2_byte_char(int byte) {
  const bool printable =
      (byte >= 0x21 && byte <= 0x7E) || (byte >= 0xA1 && byte <= 0xAC) || (byte >= 0xAE && byte <= 0xFF);
  if (printable) return unicode::encode_utf8(static_cast<uint32_t>(byte));
  int shifted = 0;
  for (int b = 0; b < byte; ++b) {
    const bool p = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    if (!p) ++shifted;
  }
  return unicode::encode_utf8(256 + shifted);
}

TokenizerVocab byte_vocab(std::vector<std::string> extra_tokens, std::vector<std::string> merges) {
  TokenizerVocab vocab;
  vocab.model = "gpt2";
  vocab.pre = "gpt2";
  for (int b = 0; b < 256; ++b) vocab.tokens.push_back(gpt2_byte_char(b));
  for (std::string& token : extra_tokens) vocab.tokens.push_back(std::move(token));
  vocab.token_types.assign(vocab.tokens.size(), kTypeNormal);
  vocab.merges = std::move(merges);
  return vocab;
}

std::unique_ptr<Tokenizer> make(TokenizerVocab vocab) {
  return testing::must(Tokenizer::from_vocab(std::move(vocab)), "tokenizer");
}

TEST(BpeTokenizerTest, GptByteAlphabetIsTheKnownOne) {
  EXPECT_EQ(gpt2_byte_char(' '), "\xC4\xA0");   // U+0120 'Ġ'
  EXPECT_EQ(gpt2_byte_char('\n'), "\xC4\x8A");  // U+010A 'Ċ'
  EXPECT_EQ(gpt2_byte_char(0xAD), "\xC5\x83");  // U+0143, the last shifted byte
}

TEST(BpeTokenizerTest, MergesApplyInRankOrder) {
  // "abc": with "b c" ranked first the word becomes a|bc, with "a b" first ab|c.
  auto bc_first = make(byte_vocab({"ab", "bc"}, {"b c", "a b"}));
  auto ab_first = make(byte_vocab({"ab", "bc"}, {"a b", "b c"}));
  ASSERT_TRUE(bc_first && ab_first);
  EXPECT_EQ(bc_first->encode("abc", false, false), (std::vector<TokenId>{'a', 257}));
  EXPECT_EQ(ab_first->encode("abc", false, false), (std::vector<TokenId>{256, 'c'}));
}

TEST(BpeTokenizerTest, MergesChainAndTiesGoLeftmost) {
  auto tokenizer = make(byte_vocab({"aa", "aaaa", "ab", "aab"}, {"a a", "aa aa", "a b", "a ab"}));
  ASSERT_TRUE(tokenizer);
  // aaaaa: a a merges leftmost first -> aa aa a -> aaaa a.
  EXPECT_EQ(tokenizer->encode("aaaaa", false, false), (std::vector<TokenId>{257, 'a'}));
  // aab: "a a" (rank 0) beats "a b" (rank 2): aa b; no "aa b" merge exists.
  EXPECT_EQ(tokenizer->encode("aab", false, false), (std::vector<TokenId>{256, 'b'}));
}

TEST(BpeTokenizerTest, SpacesAreByteMappedAndWordsStaySeparate) {
  const std::string g = gpt2_byte_char(' ');
  auto tokenizer = make(byte_vocab({g + "a", "ab"}, {g + " a", "a b"}));
  ASSERT_TRUE(tokenizer);
  // Words "ab", " ab": the second merges "Ġ a" (rank 0) before "a b" (rank 1).
  const std::vector<TokenId> ids = tokenizer->encode("ab ab", false, false);
  EXPECT_EQ(ids, (std::vector<TokenId>{257, 256, 'b'}));
  EXPECT_EQ(tokenizer->token_to_piece(256), " a");
  EXPECT_EQ(tokenizer->decode(ids), "ab ab");
}

TEST(BpeTokenizerTest, DecodeRestoresArbitraryBytes) {
  auto tokenizer = make(byte_vocab({}, {"a b"}));
  ASSERT_TRUE(tokenizer);
  const std::string text = "tab\there \xF0\x9F\x98\x80 \xE4\xB8\xAD\xFF\x00 end";
  EXPECT_EQ(tokenizer->decode(tokenizer->encode(text, false, false)), text);
}

TEST(BpeTokenizerTest, ByteMissingFromVocabularyIsDropped) {
  TokenizerVocab vocab = byte_vocab({"ac"}, {"a c"});
  vocab.tokens['b'] = "<unused-b>";  // no token for the character of byte 'b' any more
  auto tokenizer = make(std::move(vocab));
  ASSERT_TRUE(tokenizer);
  // As in HF BPE without an unknown token: the byte vanishes and its neighbours merge.
  EXPECT_EQ(tokenizer->encode("abc", false, false), (std::vector<TokenId>{256}));
}

TEST(BpeTokenizerTest, IgnoreMergesEmitsWholeWordTokens) {
  // "abc" is a token, but no merge chain reaches it; Llama-3 (ignore_merges) emits it whole.
  TokenizerVocab vocab = byte_vocab({"ab", "abc"}, {"a b"});
  vocab.pre = "llama3";
  auto llama3 = make(vocab);
  vocab.pre = "qwen2";
  auto qwen2 = make(vocab);
  ASSERT_TRUE(llama3 && qwen2);
  EXPECT_EQ(llama3->encode("abc", false, false), (std::vector<TokenId>{257}));
  EXPECT_EQ(qwen2->encode("abc", false, false), (std::vector<TokenId>{256, 'c'}));
}

TEST(BpeTokenizerTest, SpecialTokensParsedOnRequest) {
  TokenizerVocab vocab = byte_vocab({"ab", "<|end|>", "<|endx|>", "<tool>"}, {"a b"});
  vocab.token_types[257] = kTypeControl;
  vocab.token_types[258] = kTypeControl;
  vocab.token_types[259] = kTypeUserDefined;
  vocab.eos = 257;
  vocab.bos = 258;
  auto tokenizer = make(std::move(vocab));
  ASSERT_TRUE(tokenizer);
  const std::string text = "ab<|end|>ab<|endx|><tool>";
  // Longest match wins at a position; user-defined tokens are matched even without parsing.
  EXPECT_EQ(tokenizer->encode(text, false, true), (std::vector<TokenId>{256, 257, 256, 258, 259}));
  const std::vector<TokenId> plain = tokenizer->encode(text, false, false);
  EXPECT_EQ(plain.back(), 259);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 257), 0);
  EXPECT_EQ(tokenizer->decode(plain), text);
  EXPECT_EQ(tokenizer->token_to_piece(257), "<|end|>");
  // add_special follows add_bos / add_eos, both off here.
  EXPECT_EQ(tokenizer->encode("ab", true, false), (std::vector<TokenId>{256}));
  EXPECT_TRUE(tokenizer->is_eog(257));
  EXPECT_FALSE(tokenizer->is_eog(258));
  EXPECT_EQ(tokenizer->find_token("<tool>"), std::optional<TokenId>(259));
  EXPECT_EQ(tokenizer->find_token("nope"), std::nullopt);
}

TEST(BpeTokenizerTest, ChatMlEndTokenIsEndOfGeneration) {
  TokenizerVocab vocab = byte_vocab({"<|im_start|>", "<|im_end|>"}, {"a b"});
  vocab.token_types[256] = kTypeControl;
  vocab.token_types[257] = kTypeControl;
  auto tokenizer = make(std::move(vocab));
  ASSERT_TRUE(tokenizer);
  EXPECT_TRUE(tokenizer->is_eog(257));
  EXPECT_FALSE(tokenizer->is_eog(256));
}

TEST(BpeTokenizerTest, InvalidVocabulariesAreRejected) {
  TokenizerVocab unknown_pre = byte_vocab({}, {"a b"});
  unknown_pre.pre = "mystery-pre";
  StatusOr<std::unique_ptr<Tokenizer>> result = Tokenizer::from_vocab(unknown_pre);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(result.status().message().find("mystery-pre"), std::string::npos);

  TokenizerVocab unknown_model = byte_vocab({}, {"a b"});
  unknown_model.model = "wordpiece";
  result = Tokenizer::from_vocab(unknown_model);
  ASSERT_FALSE(result.ok());
  EXPECT_NE(result.status().message().find("wordpiece"), std::string::npos);

  TokenizerVocab no_merges = byte_vocab({}, {});
  EXPECT_FALSE(Tokenizer::from_vocab(no_merges).ok());

  TokenizerVocab bad_bos = byte_vocab({}, {"a b"});
  bad_bos.bos = 256;
  EXPECT_FALSE(Tokenizer::from_vocab(bad_bos).ok());

  TokenizerVocab bad_types = byte_vocab({}, {"a b"});
  bad_types.token_types.pop_back();
  EXPECT_FALSE(Tokenizer::from_vocab(bad_types).ok());
}

// ---------------------------------------------------------------------------------------------
// SentencePiece-style vocabulary: <unk> <s> </s>, 256 byte tokens, then scored pieces.

constexpr std::string_view kSpm = "\xE2\x96\x81";  // "▁"

struct SpmFixture {
  TokenizerVocab vocab;
  TokenId id(std::string_view text) const {
    for (size_t i = 0; i < vocab.tokens.size(); ++i) {
      if (vocab.tokens[i] == text) return static_cast<TokenId>(i);
    }
    ADD_FAILURE() << "no token " << text;
    return -1;
  }
};

SpmFixture spm_vocab(std::vector<std::pair<std::string, float>> pieces) {
  SpmFixture f;
  TokenizerVocab& v = f.vocab;
  v.model = "llama";
  auto add = [&](std::string text, float score, int32_t type) {
    v.tokens.push_back(std::move(text));
    v.scores.push_back(score);
    v.token_types.push_back(type);
  };
  add("<unk>", 0, kTypeUnknown);
  add("<s>", 0, kTypeControl);
  add("</s>", 0, kTypeControl);
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    add(name, 0, kTypeByte);
  }
  for (auto& [text, score] : pieces) add(std::move(text), score, kTypeNormal);
  v.unk = 0;
  v.bos = 1;
  v.eos = 2;
  v.add_bos = true;
  return f;
}

std::string sp(std::string_view text) { return std::string(kSpm) + std::string(text); }

TEST(SpmTokenizerTest, HighestScoreMergesFirst) {
  SpmFixture f = spm_vocab({{sp(""), -1},
                            {"h", -10},
                            {"e", -10},
                            {"l", -10},
                            {"o", -10},
                            {"he", -5},
                            {"ll", -3},
                            {"llo", -4},
                            {"hello", -2},
                            {sp("hello"), -1}});
  auto tokenizer = make(f.vocab);
  ASSERT_TRUE(tokenizer);
  // ll, then llo, then he, then hello, then ▁hello.
  EXPECT_EQ(tokenizer->encode("hello", false, false), (std::vector<TokenId>{f.id(sp("hello"))}));
  EXPECT_EQ(tokenizer->encode("hello", true, false), (std::vector<TokenId>{1, f.id(sp("hello"))}));
}

TEST(SpmTokenizerTest, ScoresDecideBetweenOverlappingPairs) {
  SpmFixture bc_wins = spm_vocab({{sp(""), -1}, {"a", -9}, {"b", -9}, {"c", -9}, {"ab", -8}, {"bc", -2}});
  SpmFixture ab_wins = spm_vocab({{sp(""), -1}, {"a", -9}, {"b", -9}, {"c", -9}, {"ab", -2}, {"bc", -8}});
  auto bc = make(bc_wins.vocab);
  auto ab = make(ab_wins.vocab);
  ASSERT_TRUE(bc && ab);
  EXPECT_EQ(bc->encode("abc", false, false),
            (std::vector<TokenId>{bc_wins.id(sp("")), bc_wins.id("a"), bc_wins.id("bc")}));
  EXPECT_EQ(ab->encode("abc", false, false),
            (std::vector<TokenId>{ab_wins.id(sp("")), ab_wins.id("ab"), ab_wins.id("c")}));
}

TEST(SpmTokenizerTest, UnknownCharactersFallBackToBytes) {
  SpmFixture f = spm_vocab({{sp(""), -1}, {"h", -2}, {sp("h"), -1}});
  auto tokenizer = make(f.vocab);
  ASSERT_TRUE(tokenizer);
  // "é" = C3 A9 is not a piece: <0xC3> <0xA9>.
  const std::vector<TokenId> ids = tokenizer->encode("h\xC3\xA9 h", false, false);
  EXPECT_EQ(ids, (std::vector<TokenId>{f.id(sp("h")), f.id("<0xC3>"), f.id("<0xA9>"), f.id(sp("h"))}));
  EXPECT_EQ(tokenizer->token_to_piece(f.id("<0xC3>")), "\xC3");
  EXPECT_EQ(tokenizer->token_to_piece(f.id(sp("h"))), " h");
  EXPECT_EQ(tokenizer->decode(ids), "h\xC3\xA9 h");
}

TEST(SpmTokenizerTest, SpacePrefixFollowsMetadataAndSpecialTokens) {
  SpmFixture f = spm_vocab({{sp(""), -1}, {"a", -2}, {sp("a"), -1}});
  auto with_prefix = make(f.vocab);
  f.vocab.add_space_prefix = false;
  auto without_prefix = make(f.vocab);
  ASSERT_TRUE(with_prefix && without_prefix);
  EXPECT_EQ(with_prefix->encode("a a", false, false), (std::vector<TokenId>{f.id(sp("a")), f.id(sp("a"))}));
  EXPECT_EQ(without_prefix->encode("a a", false, false), (std::vector<TokenId>{f.id("a"), f.id(sp("a"))}));
  // After a parsed special token the prefix is added again; decode removes it again.
  const std::vector<TokenId> ids = with_prefix->encode("a</s>a", false, true);
  EXPECT_EQ(ids, (std::vector<TokenId>{f.id(sp("a")), 2, f.id(sp("a"))}));
  EXPECT_EQ(with_prefix->decode(ids), "a</s>a");
  EXPECT_EQ(without_prefix->decode(without_prefix->encode(" a", false, false)), " a");
}

TEST(SpmTokenizerTest, MissingScoresAreRejected) {
  SpmFixture f = spm_vocab({{"a", -1}});
  f.vocab.scores.clear();
  EXPECT_FALSE(Tokenizer::from_vocab(f.vocab).ok());
}

// ---------------------------------------------------------------------------------------------
// UTF-8

TEST(UnicodeTest, CategoryFlags) {
  using namespace unicode;
  EXPECT_TRUE(is_letter('a'));
  EXPECT_TRUE(is_letter(0x4E2D));  // 中
  EXPECT_TRUE(is_letter(0x0627));  // Arabic alef
  EXPECT_TRUE(is_number('7'));
  EXPECT_TRUE(is_number(0x00BD));  // ½ (No)
  EXPECT_TRUE(is_number(0x216B));  // Ⅻ (Nl)
  EXPECT_TRUE(is_whitespace(' '));
  EXPECT_TRUE(is_whitespace(0x3000));
  EXPECT_TRUE(is_whitespace(0x0085));
  EXPECT_FALSE(is_whitespace(0x200B));  // zero width space is Cf, not White_Space
  EXPECT_FALSE(is_whitespace(0x001C));
  EXPECT_TRUE(codepoint_flags(0x0301) & kMark);
  EXPECT_TRUE(codepoint_flags(0x1F600) & kSymbol);
  EXPECT_TRUE(codepoint_flags('!') & kPunctuation);
  EXPECT_EQ(codepoint_flags(0x0378), 0);  // unassigned
  EXPECT_EQ(codepoint_flags(0x110000), 0);
}

TEST(UnicodeTest, DecodeReplacesMalformedSequences) {
  const auto decode_all = [](std::string_view text) {
    std::vector<uint32_t> cps;
    for (size_t pos = 0; pos < text.size();) cps.push_back(unicode::decode_utf8(text, pos));
    return cps;
  };
  constexpr uint32_t R = unicode::kReplacementChar;
  EXPECT_EQ(decode_all("a\xC3\xA9\xF0\x9F\x98\x80"), (std::vector<uint32_t>{'a', 0xE9, 0x1F600}));
  EXPECT_EQ(decode_all("\xC0\xAF"), (std::vector<uint32_t>{R, R}));                // overlong
  EXPECT_EQ(decode_all("\xED\xA0\x80"), (std::vector<uint32_t>{R, R, R}));         // surrogate
  EXPECT_EQ(decode_all("\xF4\x90\x80\x80"), (std::vector<uint32_t>{R, R, R, R}));  // > 10FFFF
  EXPECT_EQ(decode_all("\xE2\x82x"), (std::vector<uint32_t>{R, 'x'}));             // truncated
  EXPECT_EQ(decode_all("\x80"), (std::vector<uint32_t>{R}));
  EXPECT_TRUE(unicode::is_valid_utf8("ok \xEF\xBF\xBD \xE2\x82\xAC"));
  EXPECT_FALSE(unicode::is_valid_utf8("bad \xE2\x82"));
}

TEST(Utf8StreamTest, HoldsBackPartialCharacters) {
  Utf8Stream stream;
  EXPECT_EQ(stream.push("a\xF0"), "a");
  EXPECT_EQ(stream.push("\x9F"), "");
  EXPECT_EQ(stream.push("\x98"), "");
  EXPECT_EQ(stream.push("\x80!"), "\xF0\x9F\x98\x80!");
  EXPECT_EQ(stream.push("\xE4\xB8"), "");
  EXPECT_EQ(stream.pending_size(), 2u);
  EXPECT_EQ(stream.push("\xAD"), "\xE4\xB8\xAD");
  EXPECT_EQ(stream.flush(), "");
}

TEST(Utf8StreamTest, MalformedBytesBecomeReplacementCharacters) {
  const std::string r = "\xEF\xBF\xBD";
  Utf8Stream stream;
  EXPECT_EQ(stream.push("\xFF"), r);
  EXPECT_EQ(stream.push("x\xC3"), "x");
  EXPECT_EQ(stream.push("("), r + "(");       // C3 not followed by a continuation byte
  EXPECT_EQ(stream.push("\xED\xA0"), r + r);  // surrogate lead cannot be completed
  EXPECT_EQ(stream.push("\xE2\x82"), "");
  EXPECT_EQ(stream.flush(), r);  // incomplete at the end
  EXPECT_EQ(stream.push("ok"), "ok");
}

// ---------------------------------------------------------------------------------------------
// Chat templates

std::vector<ChatMessage> conversation() {
  return {{"system", " Be brief. "}, {"user", "Hi\n"}, {"assistant", "Hello!"}, {"user", "Bye"}};
}

std::string render(std::string_view tmpl, const std::vector<ChatMessage>& messages, bool add) {
  const StatusOr<std::string> rendered = apply_chat_template(tmpl, messages, add);
  EXPECT_TRUE(rendered.ok()) << rendered.status();
  return rendered.ok() ? *rendered : "";
}

// The template in SmolLM2-135M-Instruct's GGUF.
constexpr std::string_view kSmolLm2Template =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}";

TEST(ChatTemplateTest, ChatMl) {
  const std::string want =
      "<|im_start|>system\n Be brief. <|im_end|>\n<|im_start|>user\nHi\n<|im_end|>\n"
      "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n"
      "<|im_start|>assistant\n";
  EXPECT_EQ(render("{{ '<|im_start|>' + message['role'] }}", conversation(), true), want);
  EXPECT_EQ(render("", conversation(), true), want);  // empty template: ChatML
  EXPECT_EQ(render("chatml", {{"user", "x"}}, false), "<|im_start|>user\nx<|im_end|>\n");
}

TEST(ChatTemplateTest, SmolLm2AddsDefaultSystemMessage) {
  // Expected strings are what Jinja renders for this template.
  EXPECT_EQ(render(kSmolLm2Template, {{"user", "Hi there!"}}, true),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
            "Face<|im_end|>\n<|im_start|>user\nHi there!<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(render(kSmolLm2Template, {{"system", "S"}, {"user", "U"}}, false),
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n");
  EXPECT_EQ(render(kSmolLm2Template, {}, true), "<|im_start|>assistant\n");
}

TEST(ChatTemplateTest, EscapedDefaultSystemMessage) {
  // Qwen2 style: the template source holds "\n" escapes inside the Jinja string literal.
  const std::string_view tmpl =
      "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
      "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
      "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
      "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
  EXPECT_EQ(render(tmpl, {{"user", "Hi"}}, true),
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi"
            "<|im_end|>\n<|im_start|>assistant\n");
}

TEST(ChatTemplateTest, Llama3) {
  // Meta-Llama-3-8B-Instruct's template; the expected string is its Jinja rendering with an
  // empty bos_token (the tokenizer adds BOS).
  const std::string_view tmpl =
      "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
      "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | "
      "trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}"
      "{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ "
      "'<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";
  EXPECT_EQ(render(tmpl, conversation(), true),
            "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(ChatTemplateTest, Llama2) {
  const std::vector<ChatMessage> messages = {{"system", "S"}, {"user", "U1"}, {"assistant", "A1"}, {"user", "U2"}};
  // Rendered as llama.cpp renders these families (no BOS before the first [INST]).
  EXPECT_EQ(render("{{ '[INST] <<SYS>>\\n' }}", messages, true),
            "[INST] <<SYS>>\nS\n<</SYS>>\n\nU1 [/INST]A1</s>[INST] U2 [/INST]");
  EXPECT_EQ(render("{{ bos_token + '[INST] ' + content }}<<SYS>>", messages, true),
            "[INST] <<SYS>>\nS\n<</SYS>>\n\nU1 [/INST]A1</s><s>[INST] U2 [/INST]");
  EXPECT_EQ(render("{{ '[INST] ' + content.strip() }}", {{"user", " U "}}, false), "[INST] U [/INST]");
  EXPECT_EQ(render("[INST]", messages, false), "[INST] S\nU1 [/INST]A1</s>[INST] U2 [/INST]");
}

TEST(ChatTemplateTest, Mistral) {
  const std::vector<ChatMessage> messages = {{"user", "U1"}, {"assistant", " A1 "}, {"user", "U2"}};
  EXPECT_EQ(render("mistral-v3", messages, true), "[INST] U1[/INST] A1</s>[INST] U2[/INST]");
  EXPECT_EQ(render("mistral-v1", messages, true), " [INST] U1 [/INST]  A1 </s> [INST] U2 [/INST]");
  EXPECT_EQ(render("{{ '[SYSTEM_PROMPT]' }}[INST]", {{"system", "S"}, {"user", "U"}}, true),
            "[SYSTEM_PROMPT] S[/SYSTEM_PROMPT][INST] U[/INST]");
}

TEST(ChatTemplateTest, UnknownTemplateIsAnError) {
  const StatusOr<std::string> rendered =
      apply_chat_template("{% for m in messages %}<<weird>>{{ m.content }}", conversation(), true);
  ASSERT_FALSE(rendered.ok());
  EXPECT_EQ(rendered.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(rendered.status().message().find("<<weird>>"), std::string::npos);
}

}  // namespace
}  // namespace edgeinf
