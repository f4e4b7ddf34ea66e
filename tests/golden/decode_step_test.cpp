// The decode step the CLI and the service share, driven token by token with one-hot logits on the
// real model's tokenizer: characters split across byte tokens come out whole with all their ids,
// stop strings are held back and never emitted, an end-of-generation token ends the turn and
// counts, and max_tokens and a full context end it with their reasons.
#include "engine/runtime/decode_step.h"

#include <gtest/gtest.h>

#include <cmath>

#include "engine/model/gguf.h"
#include "tests/must.h"
#include "tests/test_paths.h"

namespace edgeinf {
namespace {

class DecodeStepTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto gguf = testing::must(GgufFile::open(testing::test_model_path()), "the real model");
    tokenizer_ = testing::must(Tokenizer::from_gguf(*gguf), "its tokenizer").release();
  }
  static void TearDownTestSuite() { delete tokenizer_; }

  // Logits that make greedy sampling pick `id`.
  static std::vector<float> pick(TokenId id) {
    std::vector<float> l(size_t(tokenizer_->n_vocab()), 0.0f);
    l[size_t(id)] = 10.0f;
    return l;
  }
  static GenerateOptions greedy(int max_tokens) {
    GenerateOptions o;
    o.sampling.temperature = 0.0f;
    o.max_tokens = max_tokens;
    return o;
  }
  static TokenId eog() {
    for (TokenId id = 0; id < tokenizer_->n_vocab(); ++id) {
      if (tokenizer_->is_eog(id)) return id;
    }
    return -1;
  }

  static Tokenizer* tokenizer_;
};

Tokenizer* DecodeStepTest::tokenizer_ = nullptr;

TEST_F(DecodeStepTest, ACharacterSplitAcrossTokensComesOutWholeWithAllItsIds) {
  const std::vector<TokenId> ids = tokenizer_->encode("🎉", false, false);
  ASSERT_GE(ids.size(), 2u) << "the emoji should take several byte tokens";
  DecodeStep step(*tokenizer_, greedy(16));
  for (size_t i = 0; i + 1 < ids.size(); ++i) {
    const DecodeStep::Token t = step.next(pick(ids[i]), true);
    EXPECT_EQ(t.id, ids[i]);
    EXPECT_TRUE(t.text.empty());
    EXPECT_TRUE(t.ids.empty());
    EXPECT_FALSE(t.finish.has_value());
  }
  const DecodeStep::Token last = step.next(pick(ids.back()), true);
  EXPECT_EQ(last.text, "🎉");
  EXPECT_EQ(last.ids, ids);
  EXPECT_EQ(step.generated(), int(ids.size()));
}

TEST_F(DecodeStepTest, ACharacterCutAtTheEndIsKeptAsBytesOrReplaced) {
  const std::vector<TokenId> ids = tokenizer_->encode("🎉", false, false);
  ASSERT_GE(ids.size(), 2u);
  const std::string first_bytes = tokenizer_->token_to_piece(ids[0]);
  {
    DecodeStep step(*tokenizer_, greedy(1));
    const DecodeStep::Token t = step.next(pick(ids[0]), true);
    EXPECT_EQ(t.finish, FinishReason::kLength);
    EXPECT_TRUE(step.done());
    std::string incomplete;
    const DecodeStep::Token rest = step.flush(true, &incomplete);
    EXPECT_EQ(incomplete, first_bytes);
    EXPECT_EQ(rest.text, "");
    EXPECT_EQ(rest.ids, std::vector<TokenId>{ids[0]});
  }
  {
    DecodeStep step(*tokenizer_, greedy(1));
    step.next(pick(ids[0]), true);
    EXPECT_EQ(step.flush(false, nullptr).text, "\xEF\xBF\xBD");  // U+FFFD
  }
}

TEST_F(DecodeStepTest, StopStringsAreHeldBackAndNeverEmitted) {
  const std::vector<TokenId> ids = tokenizer_->encode("The capital of France is Paris.", false, false);
  GenerateOptions o = greedy(64);
  o.stop = {"France"};
  DecodeStep step(*tokenizer_, o);
  std::string text;
  std::optional<FinishReason> finish;
  size_t used = 0;
  for (TokenId id : ids) {
    const DecodeStep::Token t = step.next(pick(id), true);
    ++used;
    text += t.text;
    if (t.finish) {
      finish = t.finish;
      break;
    }
  }
  EXPECT_EQ(text, "The capital of ");
  EXPECT_EQ(finish, FinishReason::kStopString);
  EXPECT_LT(used, ids.size());
}

TEST_F(DecodeStepTest, EndOfGenerationEndsTheTurnAndCounts) {
  const TokenId end = eog();
  ASSERT_GE(end, 0);
  const TokenId word = tokenizer_->encode("Hello", false, false)[0];
  DecodeStep step(*tokenizer_, greedy(8));
  EXPECT_FALSE(step.next(pick(word), true).finish.has_value());
  const DecodeStep::Token t = step.next(pick(end), true);
  EXPECT_EQ(t.finish, FinishReason::kEndOfGeneration);
  EXPECT_TRUE(t.text.empty());
  EXPECT_EQ(step.generated(), 2);
  // With ignore_eos it is just a token.
  GenerateOptions o = greedy(8);
  o.ignore_eos = true;
  DecodeStep ignoring(*tokenizer_, o);
  EXPECT_FALSE(ignoring.next(pick(end), true).finish.has_value());
}

TEST_F(DecodeStepTest, MaxTokensAndAFullContextEndTheTurn) {
  const TokenId word = tokenizer_->encode("Hello", false, false)[0];
  DecodeStep step(*tokenizer_, greedy(3));
  EXPECT_FALSE(step.next(pick(word), true).finish.has_value());
  EXPECT_FALSE(step.next(pick(word), true).finish.has_value());
  EXPECT_EQ(step.next(pick(word), true).finish, FinishReason::kLength);
  EXPECT_TRUE(step.done());
  DecodeStep full(*tokenizer_, greedy(3));
  EXPECT_EQ(full.next(pick(word), false).finish, FinishReason::kContextFull);
  // max_tokens wins when both hold.
  DecodeStep last(*tokenizer_, greedy(1));
  EXPECT_EQ(last.next(pick(word), false).finish, FinishReason::kLength);
}

TEST_F(DecodeStepTest, ThePenaltiesSeeTheInput) {
  // A repetition penalty on a token the input holds turns greedy away from it.
  const std::vector<TokenId> two = tokenizer_->encode("Hello world", false, false);
  ASSERT_GE(two.size(), 2u);
  std::vector<float> logits(size_t(tokenizer_->n_vocab()), 0.0f);
  logits[size_t(two[0])] = 2.0f;
  logits[size_t(two[1])] = 1.9f;
  GenerateOptions o = greedy(4);
  o.sampling.repeat_penalty = 1.5f;
  DecodeStep fresh(*tokenizer_, o);
  EXPECT_EQ(fresh.next(logits, true).id, two[0]);
  DecodeStep seen(*tokenizer_, o);
  seen.accept(two[0]);
  EXPECT_EQ(seen.next(logits, true).id, two[1]);
}

}  // namespace
}  // namespace edgeinf
