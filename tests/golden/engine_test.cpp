// The engine in process, without a transport: the real model, an on-disk store in a temporary
// directory. It renders chat messages with the model's template itself (opening a conversation on
// a fresh session, continuing it on a later turn), refuses bad prompts with the reason, says what
// it serves, stops a cancelled turn between steps without touching its session, and leaves
// service for good after a device failure.
#include "engine/api/engine.h"

#include <gtest/gtest.h>

#include <unistd.h>
#include <filesystem>

#include <atomic>
#include <future>
#include <mutex>

#include "tests/must.h"
#include "tests/test_paths.h"

namespace edgeinf {
namespace {

struct Done {
  StatusOr<TurnResult> result = absl::UnknownError("not run");
  std::string text;
};

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override { start({}); }
  // (Re)starts the engine on a fresh store; `open_backends` as in EngineConfig.
  void start(std::function<StatusOr<Backends>(const LlamaModel&, kernels::cpu::ThreadPool&)> open_backends) {
    stop();
    dir_ = std::filesystem::temp_directory_path() / ("edgeinf_engine_test_" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    EngineConfig c;
    c.model_path = testing::test_model_path();
    c.threads = 2;
    c.device = "cpu";
    c.memory_budget_bytes = size_t(2) << 30;
    c.open_backends = std::move(open_backends);
    const std::string store = dir_.string();
    engine_ = testing::must(Engine::create(c, [store] { return open_dir_store(store); }), "Engine::create");
  }
  void stop() {
    if (engine_ == nullptr) return;
    engine_->shutdown();
    engine_.reset();
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override { stop(); }

  Done run(TurnRequest r) {
    Done d;
    std::promise<StatusOr<TurnResult>> p;
    TurnEvents ev;
    ev.delta = [&d](std::string text, std::vector<TokenId>) { d.text += text; };
    engine_->submit(std::move(r), std::move(ev), [&p](StatusOr<TurnResult> res) { p.set_value(std::move(res)); });
    d.result = p.get_future().get();
    return d;
  }
  static TurnRequest ask(const std::string& session, std::vector<ChatMessage> messages, int max_tokens = 24) {
    TurnRequest r;
    r.tenant = "test";
    r.session_id = session;
    r.prompt.kind = TurnPrompt::Kind::kMessages;
    r.prompt.messages = std::move(messages);
    r.gen.sampling.temperature = 0.0f;
    r.gen.max_tokens = max_tokens;
    return r;
  }

  std::filesystem::path dir_;
  std::unique_ptr<Engine> engine_;
};

TEST_F(EngineTest, SaysWhatItServes) {
  const EngineInfo i = engine_->info();
  EXPECT_FALSE(i.model_name.empty());
  EXPECT_EQ(i.model_fingerprint.size(), 16u);
  EXPECT_GT(i.native_context, 0);
  EXPECT_EQ(i.policies, kv_policy_names());
  EXPECT_EQ(i.default_kv.name, "edgeinfinite");
  EXPECT_FALSE(i.gate.empty()) << "the shipped gate beside the model";
  EXPECT_EQ(i.device, "cpu");
  EXPECT_EQ(engine_->tokenize("<|im_start|>", true).size(), 1u);
  EXPECT_GT(engine_->tokenize("<|im_start|>", false).size(), 1u);
}

TEST_F(EngineTest, RendersTheChatTemplateAndContinuesTheConversation) {
  const Done one_off = run(ask("", {{"user", "What is the capital of France?"}}));
  ASSERT_TRUE(one_off.result.ok()) << one_off.result.status();
  EXPECT_EQ(one_off.text, "The capital of France is Paris.");
  EXPECT_EQ(one_off.result->finish, FinishReason::kEndOfGeneration);

  // The same question as a session's first turn gives the same answer; a second turn continues
  // the conversation (no second system message or BOS): its prompt is shorter than a fresh one.
  const SessionInfo s = testing::must(engine_->create_session("test", "", {}, 0, 0), "create_session");
  const Done first = run(ask(s.id, {{"user", "What is the capital of France?"}}));
  ASSERT_TRUE(first.result.ok()) << first.result.status();
  EXPECT_EQ(first.text, one_off.text);
  const Done second = run(ask(s.id, {{"user", "And of Italy?"}}));
  ASSERT_TRUE(second.result.ok()) << second.result.status();
  EXPECT_NE(second.text.find("Rome"), std::string::npos) << second.text;
  const Done fresh = run(ask("", {{"user", "And of Italy?"}}));
  ASSERT_TRUE(fresh.result.ok()) << fresh.result.status();
  EXPECT_LT(second.result->usage.prompt_tokens, fresh.result->usage.prompt_tokens);
  EXPECT_EQ(second.result->usage.cached_tokens,
            first.result->usage.prompt_tokens + first.result->usage.generated_tokens);
}

TEST_F(EngineTest, BadPromptsAreRefusedWithTheReason) {
  auto code_and_message = [&](TurnRequest r) {
    const Done d = run(std::move(r));
    EXPECT_FALSE(d.result.ok());
    return std::make_pair(d.result.status().code(), std::string(d.result.status().message()));
  };
  EXPECT_EQ(code_and_message(ask("", {{"wizard", "hi"}})),
            std::make_pair(absl::StatusCode::kInvalidArgument,
                           std::string("messages: unknown role 'wizard' (system, user, assistant)")));
  // A long role with characters outside ASCII is quoted shortened, still well-formed UTF-8.
  const std::string role = std::string(31, 'r') + "\xc3\xa9" + std::string(40, 'r');
  EXPECT_EQ(code_and_message(ask("", {{role, "hi"}})).second, "messages: unknown role '" + std::string(31, 'r') + "??" +
                                                                  std::string(31, 'r') +
                                                                  "...' (73 bytes) (system, user, assistant)");
  EXPECT_EQ(code_and_message(ask("", {})),
            std::make_pair(absl::StatusCode::kInvalidArgument, std::string("messages is empty")));
  TurnRequest none = ask("", {});
  none.prompt.kind = TurnPrompt::Kind::kNone;
  EXPECT_EQ(code_and_message(none), std::make_pair(absl::StatusCode::kInvalidArgument,
                                                   std::string("input is missing: set text, messages or token_ids")));
  TurnRequest text = ask("", {});
  text.prompt.kind = TurnPrompt::Kind::kText;
  EXPECT_EQ(code_and_message(text), std::make_pair(absl::StatusCode::kInvalidArgument, std::string("text is empty")));
  TurnRequest ids = ask("", {});
  ids.prompt.kind = TurnPrompt::Kind::kTokenIds;
  ids.prompt.token_ids = {1, 1 << 30};
  EXPECT_EQ(code_and_message(ids).first, absl::StatusCode::kInvalidArgument);
  // The engine still serves.
  EXPECT_TRUE(run(ask("", {{"user", "Hi"}}, 2)).result.ok());
}

TEST_F(EngineTest, ATurnCancelledBetweenStepsLeavesItsSessionAsItWas) {
  const SessionInfo s = testing::must(engine_->create_session("test", "", {}, 0, 0), "create_session");
  const Done first = run(ask(s.id, {{"user", "What is the capital of France?"}}));
  ASSERT_TRUE(first.result.ok()) << first.result.status();
  // A long prompt, cancelled after its first prefill segment: no further step runs, nothing is
  // committed, and the session's next turn continues from the first one.
  std::string doc;
  for (int i = 0; i < 400; ++i) doc += "The river bends east past the mill, then north. ";
  TurnRequest r = ask(s.id, {{"user", doc}}, 8);
  std::atomic<int> segments{0};
  std::atomic<bool> cancel{false};
  std::promise<StatusOr<TurnResult>> p;
  TurnEvents ev;
  ev.progress = [&](int64_t, int64_t) {
    ++segments;
    cancel = true;
  };
  ev.cancelled = [&] { return cancel.load(); };
  engine_->submit(std::move(r), std::move(ev), [&p](StatusOr<TurnResult> res) { p.set_value(std::move(res)); });
  const StatusOr<TurnResult> cancelled = p.get_future().get();
  EXPECT_EQ(cancelled.status().code(), absl::StatusCode::kCancelled) << cancelled.status();
  EXPECT_EQ(segments, 1);
  const SessionInfo after = testing::must(engine_->get_session("test", s.id), "get_session");
  EXPECT_EQ(after.etag, first.result->etag);
  EXPECT_EQ(after.total_tokens, first.result->session_tokens);
  const Done next = run(ask(s.id, {{"user", "And of Italy?"}}));
  ASSERT_TRUE(next.result.ok()) << next.result.status();
  EXPECT_EQ(next.result->usage.cached_tokens, first.result->session_tokens);
  EXPECT_NE(next.text.find("Rome"), std::string::npos) << next.text;
}

// A device that runs on the CPU until told to fail, then fails for good, as a sticky CUDA error does.
class FailingDevice final : public ModelBackend {
 public:
  explicit FailingDevice(std::unique_ptr<ModelBackend> cpu) : cpu_(std::move(cpu)) {}
  std::atomic<bool> fail_next{false};

  const char* device() const override { return "test-device"; }
  std::string describe() const override { return "the CPU, failing on demand"; }
  const LlamaModel& model() const override { return cpu_->model(); }
  bool supports(const std::string& policy) const override { return cpu_->supports(policy); }
  StatusOr<std::unique_ptr<KvPolicy>> make_policy(const KvPolicyOptions& o) override { return cpu_->make_policy(o); }
  Status forward(std::span<const TokenId> tokens, KvPolicy& policy, bool all_logits, float* logits) override {
    EDGEINF_RETURN_IF_ERROR(check());
    return cpu_->forward(tokens, policy, all_logits, logits);
  }
  Status forward_each(std::span<KvPolicy* const> policies, std::span<const TokenId> tokens, float* logits) override {
    EDGEINF_RETURN_IF_ERROR(check());
    return cpu_->forward_each(policies, tokens, logits);
  }
  Status failure() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return failure_;
  }

 private:
  Status check() {
    std::lock_guard<std::mutex> lock(mu_);
    if (fail_next && failure_.ok()) failure_ = absl::InternalError("the test device failed");
    return failure_;
  }
  std::unique_ptr<ModelBackend> cpu_;
  mutable std::mutex mu_;
  Status failure_;
};

TEST_F(EngineTest, ADeviceFailureTakesTheEngineOutOfServiceForGood) {
  FailingDevice* device = nullptr;
  start([&device](const LlamaModel& model, kernels::cpu::ThreadPool& pool) -> StatusOr<Backends> {
    Backends b;
    b.requested = "cuda";
    b.cpu = make_cpu_backend(model, pool);
    auto d = std::make_unique<FailingDevice>(make_cpu_backend(model, pool));
    device = d.get();
    b.device = std::move(d);
    return b;
  });
  ASSERT_NE(device, nullptr);
  EXPECT_EQ(engine_->info().device, "test-device: the CPU, failing on demand");
  const SessionInfo s = testing::must(engine_->create_session("test", "", {}, 0, 0), "create_session");
  const Done ok = run(ask(s.id, {{"user", "What is the capital of France?"}}));
  ASSERT_TRUE(ok.result.ok()) << ok.result.status();
  EXPECT_TRUE(engine_->health().ok());

  device->fail_next = true;
  const Done failed = run(ask(s.id, {{"user", "And of Italy?"}}));
  ASSERT_FALSE(failed.result.ok());
  EXPECT_EQ(failed.result.status().code(), absl::StatusCode::kInternal) << failed.result.status();
  const Status h = engine_->health();
  EXPECT_EQ(h.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(h.message().find("out of service after a device failure (the test device failed)"), std::string::npos)
      << h.message();
  // Every later turn is refused with that reason, one-off or on a session; the session keeps its
  // last committed state (the failed turn committed nothing).
  for (const std::string& session : {std::string(), s.id}) {
    const Done refused = run(ask(session, {{"user", "Hello"}}));
    ASSERT_FALSE(refused.result.ok());
    EXPECT_EQ(refused.result.status().code(), absl::StatusCode::kUnavailable) << refused.result.status();
  }
  const SessionInfo after = testing::must(engine_->get_session("test", s.id), "get_session");
  EXPECT_EQ(after.total_tokens, ok.result->session_tokens);
}

}  // namespace
}  // namespace edgeinf
