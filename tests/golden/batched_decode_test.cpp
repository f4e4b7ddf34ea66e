// Decode steps of several contexts batched into one forward pass (LlamaContext::eval_each) give
// every context exactly the logits it gets alone, whatever else is in the batch and whatever
// policy each context runs; bad batches are refused without touching any context.
#include <gtest/gtest.h>

#include <cstring>

#include "engine/kv/memory_gate.h"
#include "engine/runtime/llama_context.h"
#include "tests/cpu_backends.h"
#include "tests/golden/tiny_model.h"

namespace edgeinf {
namespace {

using testing::random_tokens;
using testing::tiny_model;
constexpr auto& tokens = random_tokens;

TEST(BatchedDecode, EachContextGetsExactlyItsOwnLogits) {
  const LlamaModel& m = tiny_model();
  const int n_vocab = m.config().n_vocab;
  kernels::cpu::ThreadPool pool(2);
  testing::CpuBackends cpu(pool);
  MemoryGate gate({GateKind::kScalar, 2, 24, 16}, AttentionShape::of(m), 0.0f);
  std::vector<KvPolicyOptions> kvs;
  for (const char* name : {"full", "streaming", "edgeinfinite", "edgeinfinite", "snapkv"}) {
    KvPolicyOptions o;
    o.name = name;
    o.n_ctx = 512;
    o.sink = 2;
    o.window = 24;
    o.segment = 16;
    o.budget = 40;
    o.obs_window = 4;
    o.gate = std::string(name) == "edgeinfinite" ? &gate : nullptr;
    kvs.push_back(o);
  }
  auto make = [&](const KvPolicyOptions& kv) {
    LlamaContextOptions o;
    o.kv = kv;
    o.n_batch = 16;
    return std::move(*LlamaContext::create(cpu(m), o));
  };
  std::vector<std::unique_ptr<LlamaContext>> alone, batched;
  for (size_t i = 0; i < kvs.size(); ++i) {
    const std::vector<TokenId> prompt = tokens(30 + int(i) * 17, n_vocab, i + 1);  // different lengths
    alone.push_back(make(kvs[i]));
    batched.push_back(make(kvs[i]));
    for (size_t b = 0; b < prompt.size(); b += 16) {
      const std::span<const TokenId> part(prompt.data() + b, std::min<size_t>(16, prompt.size() - b));
      ASSERT_TRUE(alone.back()->eval(part).ok());
      ASSERT_TRUE(batched.back()->eval(part).ok());
    }
  }
  for (int step = 0; step < 40; ++step) {
    // A changing subset joins each step, as sessions come and go.
    std::vector<LlamaContext*> ctxs;
    std::vector<TokenId> toks;
    std::vector<size_t> which;
    for (size_t i = 0; i < kvs.size(); ++i) {
      if ((step + int(i)) % 3 == 0 && step % 5 != 4) continue;
      ctxs.push_back(batched[i].get());
      toks.push_back(TokenId((step * 31 + int(i) * 7) % n_vocab));
      which.push_back(i);
    }
    const Status got = LlamaContext::eval_each(ctxs, toks);
    ASSERT_TRUE(got.ok()) << got;
    for (size_t j = 0; j < ctxs.size(); ++j) {
      const TokenId t[1] = {toks[j]};
      auto want = alone[which[j]]->eval(t);
      ASSERT_TRUE(want.ok());
      ASSERT_EQ(std::memcmp(want->data(), ctxs[j]->logits().data(), size_t(n_vocab) * sizeof(float)), 0)
          << "step " << step << ", context " << which[j] << " (" << kvs[which[j]].name << ")";
    }
  }
}

TEST(BatchedDecode, BadBatchesAreRefused) {
  const LlamaModel& m = tiny_model();
  kernels::cpu::ThreadPool pool(1);
  testing::CpuBackends cpu(pool);
  LlamaContextOptions o;
  o.kv.n_ctx = 8;
  auto a = std::move(*LlamaContext::create(cpu(m), o));
  auto b = std::move(*LlamaContext::create(cpu(m), o));
  LlamaContext* both[] = {a.get(), b.get()};
  LlamaContext* twice[] = {a.get(), a.get()};
  const TokenId ok[] = {1, 2}, bad[] = {1, 1 << 30}, one[] = {1};
  EXPECT_EQ(LlamaContext::eval_each(both, one).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(LlamaContext::eval_each(twice, ok).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(LlamaContext::eval_each(both, bad).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(a->n_past(), 0);
  EXPECT_EQ(b->n_past(), 0);
  EXPECT_TRUE(LlamaContext::eval_each(both, ok).ok());
  EXPECT_EQ(a->n_past(), 1);
}

}  // namespace
}  // namespace edgeinf
