// The generation loop on the real model: seeded sampling is reproducible, stop strings and
// max_tokens end generation as documented, streamed pieces are whole UTF-8 characters, and
// prefill progress is reported batch by batch.
#include <gtest/gtest.h>

#include "engine/runtime/generator.h"
#include "engine/tokenizer/chat_template.h"
#include "engine/tokenizer/unicode.h"
#include "tests/cpu_backends.h"
#include "tests/must.h"
#include "tests/test_paths.h"

namespace edgeinf {
namespace {

class GenerateTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto m = LlamaModel::load(testing::test_model_path());
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = std::move(*m).release();
    auto t = Tokenizer::from_gguf(model_->gguf());
    ASSERT_TRUE(t.ok()) << t.status();
    tokenizer_ = std::move(*t).release();
  }
  static void TearDownTestSuite() {
    delete tokenizer_;
    delete model_;
  }

  std::vector<TokenId> chat_prompt(const std::string& user) {
    const ChatMessage msg{"user", user};
    const std::string text = testing::must(
        apply_chat_template(tokenizer_->chat_template(), std::span<const ChatMessage>(&msg, 1), true), "chat template");
    return tokenizer_->encode(text, true, true);
  }

  struct Run {
    std::string text;
    std::vector<std::string> pieces;
    std::vector<std::pair<int, int>> progress;
    GenerateStats stats;
  };

  Run run(const std::vector<TokenId>& prompt, const GenerateOptions& opt, int n_batch = 256) {
    kernels::cpu::ThreadPool pool(2);
    testing::CpuBackends cpu(pool);
    LlamaContextOptions copt;
    copt.kv.n_ctx = 1024;
    copt.n_batch = n_batch;
    auto context = LlamaContext::create(cpu(*model_), copt);
    EXPECT_TRUE(context.ok()) << context.status();
    LlamaContext& ctx = **context;
    Run r;
    GenerateCallbacks cb;
    cb.on_text = [&](std::string_view piece, TokenId) {
      r.pieces.emplace_back(piece);
      r.text += piece;
      return true;
    };
    cb.on_prefill_progress = [&](int done, int total) { r.progress.emplace_back(done, total); };
    auto stats = generate(ctx, *tokenizer_, prompt, opt, cb);
    EXPECT_TRUE(stats.ok()) << stats.status();
    if (stats.ok()) r.stats = *stats;
    return r;
  }

  static LlamaModel* model_;
  static Tokenizer* tokenizer_;
};

LlamaModel* GenerateTest::model_ = nullptr;
Tokenizer* GenerateTest::tokenizer_ = nullptr;

TEST_F(GenerateTest, SameSeedSameTextOtherSeedDiffers) {
  GenerateOptions opt;
  opt.max_tokens = 24;
  opt.sampling.temperature = 1.0f;
  opt.sampling.seed = 1234;
  const auto prompt = chat_prompt("Write a short story about a robot.");
  const Run a = run(prompt, opt), b = run(prompt, opt);
  opt.sampling.seed = 99;
  const Run c = run(prompt, opt);
  EXPECT_EQ(a.text, b.text);
  EXPECT_FALSE(a.text.empty());
  EXPECT_NE(a.text, c.text);
}

TEST_F(GenerateTest, GreedyAnswerAndEndOfTurn) {
  GenerateOptions opt;
  opt.sampling.temperature = 0.0f;
  opt.max_tokens = 64;
  const Run r = run(chat_prompt("What is the capital of France?"), opt);
  EXPECT_EQ(r.text, "The capital of France is Paris.");
  EXPECT_EQ(r.stats.finish, FinishReason::kEndOfGeneration);
}

TEST_F(GenerateTest, MaxTokensAndStopStrings) {
  GenerateOptions opt;
  opt.sampling.temperature = 0.0f;
  opt.max_tokens = 3;
  const auto prompt = chat_prompt("What is the capital of France?");
  const Run capped = run(prompt, opt);
  EXPECT_EQ(capped.stats.generated_tokens, 3);
  EXPECT_EQ(capped.stats.finish, FinishReason::kLength);
  opt.max_tokens = 64;
  opt.stop = {"France"};
  const Run stopped = run(prompt, opt);
  EXPECT_EQ(stopped.text, "The capital of ");
  EXPECT_EQ(stopped.stats.finish, FinishReason::kStopString);
}

TEST_F(GenerateTest, StreamedPiecesAreWholeCharacters) {
  GenerateOptions opt;
  opt.sampling.temperature = 0.0f;
  opt.max_tokens = 48;
  const Run r = run(chat_prompt("Écris une phrase en français avec des accents, puis un emoji 🎉."), opt);
  ASSERT_FALSE(r.pieces.empty());
  for (const std::string& p : r.pieces) EXPECT_TRUE(unicode::is_valid_utf8(p)) << "piece '" << p << "'";
}

TEST_F(GenerateTest, PrefillProgressIsReportedPerBatch) {
  GenerateOptions opt;
  opt.max_tokens = 1;
  std::vector<TokenId> prompt = tokenizer_->encode(std::string(300, 'a') + " and the rest", true, false);
  const Run r = run(prompt, opt, /*n_batch=*/64);
  ASSERT_GE(r.progress.size(), 2u);
  for (size_t i = 0; i < r.progress.size(); ++i) {
    EXPECT_EQ(r.progress[i].second, int(prompt.size()));
    if (i > 0) {
      EXPECT_GT(r.progress[i].first, r.progress[i - 1].first);
    }
  }
  EXPECT_EQ(r.progress.back().first, int(prompt.size()));
}

TEST_F(GenerateTest, RejectsBadRequests) {
  kernels::cpu::ThreadPool pool(1);
  testing::CpuBackends cpu(pool);
  LlamaContextOptions copt;
  copt.kv.n_ctx = 8;
  auto context = LlamaContext::create(cpu(*model_), copt);
  ASSERT_TRUE(context.ok()) << context.status();
  LlamaContext& ctx = **context;
  GenerateOptions opt;
  const std::vector<TokenId> too_long(9, 100);
  EXPECT_EQ(generate(ctx, *tokenizer_, too_long, opt, {}).status().code(), absl::StatusCode::kOutOfRange);
  const std::vector<TokenId> bad_id = {1, 999999};
  EXPECT_EQ(generate(ctx, *tokenizer_, bad_id, opt, {}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(generate(ctx, *tokenizer_, {}, opt, {}).status().code(), absl::StatusCode::kInvalidArgument);
  opt.sampling.top_p = 2.0f;
  const std::vector<TokenId> ok = {1, 2};
  EXPECT_EQ(generate(ctx, *tokenizer_, ok, opt, {}).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace edgeinf
