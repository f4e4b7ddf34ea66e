// Once a session is warm, its decode steps and prefill segments allocate nothing on the heap: this
// binary replaces the global operator new with one that counts the calls made while a test has
// armed it (on every thread, the pool's included), and runs the real model through every KV
// policy and KV type: single-token steps with sampling, batched steps of several sessions, and
// whole prefill segments, with the windows sliding, entries selected and the memory folding and
// read. Set EDGEINF_ALLOC_TRACE=1 to print the stack of each counted allocation.
#include <execinfo.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/kv/memory_gate.h"
#include "engine/runtime/llama_context.h"
#include "engine/sampling/sampler.h"
#include "kernels/cpu/thread_pool.h"
#include "tests/cpu_backends.h"
#include "tests/must.h"
#include "tests/test_paths.h"

namespace {

std::atomic<bool> g_armed{false};
std::atomic<int64_t> g_allocations{0};

void count_allocation() {
  if (!g_armed.load(std::memory_order_relaxed)) return;
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  static const bool trace = std::getenv("EDGEINF_ALLOC_TRACE") != nullptr;
  if (trace) {
    void* frames[32];
    const int n = backtrace(frames, 32);
    (void)!write(2, "allocation while armed:\n", 24);
    backtrace_symbols_fd(frames, n, 2);
  }
}

void* allocate(size_t n, size_t align) {
  count_allocation();
  if (n == 0) n = 1;
  void* p = nullptr;
  if (align <= alignof(std::max_align_t)) {
    p = std::malloc(n);
  } else if (posix_memalign(&p, align, n) != 0) {
    p = nullptr;
  }
  return p;
}

}  // namespace

void* operator new(size_t n) {
  if (void* p = allocate(n, 0)) return p;
  throw std::bad_alloc();
}
void* operator new[](size_t n) {
  if (void* p = allocate(n, 0)) return p;
  throw std::bad_alloc();
}
void* operator new(size_t n, std::align_val_t a) {
  if (void* p = allocate(n, size_t(a))) return p;
  throw std::bad_alloc();
}
void* operator new[](size_t n, std::align_val_t a) {
  if (void* p = allocate(n, size_t(a))) return p;
  throw std::bad_alloc();
}
void* operator new(size_t n, const std::nothrow_t&) noexcept { return allocate(n, 0); }
void* operator new[](size_t n, const std::nothrow_t&) noexcept { return allocate(n, 0); }
void* operator new(size_t n, std::align_val_t a, const std::nothrow_t&) noexcept { return allocate(n, size_t(a)); }
void* operator new[](size_t n, std::align_val_t a, const std::nothrow_t&) noexcept { return allocate(n, size_t(a)); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t, std::align_val_t) noexcept { std::free(p); }

namespace edgeinf {
namespace {

using testing::must;

// Counts the heap allocations made on any thread between construction and count().
class Counting {
 public:
  Counting() {
    g_allocations.store(0);
    g_armed.store(true);
  }
  ~Counting() { g_armed.store(false); }
  int64_t count() {
    g_armed.store(false);
    return g_allocations.load();
  }
};

const LlamaModel& real_model() {
  static const LlamaModel* model = must(LlamaModel::load(testing::test_model_path()), "the model").release();
  return *model;
}

struct Case {
  const char* policy;
  KvType type;
};

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  return std::string(info.param.policy) + "_" + kv_type_name(info.param.type);
}

// S + W + L = 96 exact entries: the windows slide, SnapKV/PyramidKV select and EdgeInfinite folds
// within a few segments.
constexpr int kSink = 4, kWindow = 60, kSegment = 32;

class SteadyState : public ::testing::TestWithParam<Case> {
 protected:
  SteadyState() : pool_(2), cpu_(pool_), gate_(gate_config(), AttentionShape::of(real_model()), 0.0f) {}

  static GateConfig gate_config() {
    GateConfig c;
    c.kind = GateKind::kLinear;  // the gate that runs a matmul over both read-outs
    c.sink = kSink, c.window = kWindow, c.segment = kSegment;
    return c;
  }

  std::unique_ptr<LlamaContext> make() {
    LlamaContextOptions o;
    o.kv.name = GetParam().policy;
    o.kv.kv_type = GetParam().type;
    o.kv.n_ctx = 2048;
    o.kv.sink = kSink, o.kv.window = kWindow, o.kv.segment = kSegment;
    o.kv.gate = &gate_;
    o.n_batch = kSegment;
    return must(LlamaContext::create(cpu_(real_model()), o), "the context");
  }

  std::vector<TokenId> tokens(int n, int seed) const {
    std::vector<TokenId> out(static_cast<size_t>(n));
    const int n_vocab = real_model().config().n_vocab;
    for (int i = 0; i < n; ++i) out[size_t(i)] = TokenId((i * 7919 + seed * 104729 + 13) % n_vocab);
    return out;
  }

  kernels::cpu::ThreadPool pool_;
  testing::CpuBackends cpu_;
  MemoryGate gate_;
};

TEST_P(SteadyState, DecodeStepsAndPrefillSegmentsAllocateNothing) {
  std::unique_ptr<LlamaContext> ctx = make();
  SamplingParams sp;
  sp.seed = 7;
  Sampler sampler(sp, real_model().config().n_vocab);
  // Warm: four segments (the exact part fills and starts to slide, select or fold) and a few
  // steps, so every buffer has met its largest use.
  const std::vector<TokenId> prompt = tokens(4 * kSegment, 1);
  ASSERT_TRUE(ctx->eval(prompt).ok());
  for (TokenId t : prompt) sampler.accept(t);
  TokenId next = sampler.sample(ctx->logits());
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(ctx->eval(std::span<const TokenId>(&next, 1)).ok());
    sampler.accept(next);
    next = sampler.sample(ctx->logits());
  }
  const int64_t warm_seen = ctx->n_past();

  // Decode: 3 segments' worth of single-token steps, with sampling (more than a window's slide).
  constexpr int kSteps = 3 * kSegment;
  bool ok = true;
  int64_t n_alloc = 0;
  {
    Counting counting;
    for (int i = 0; i < kSteps; ++i) {
      ok = ok && ctx->eval(std::span<const TokenId>(&next, 1)).ok();
      sampler.accept(next);
      next = sampler.sample(ctx->logits());
    }
    n_alloc = counting.count();
  }
  ASSERT_TRUE(ok);
  EXPECT_EQ(ctx->n_past(), warm_seen + kSteps);
  EXPECT_EQ(n_alloc, 0) << "heap allocations in " << kSteps << " warm decode steps";

  // Prefill: three more segments.
  const std::vector<TokenId> more = tokens(3 * kSegment, 2);
  {
    Counting counting;
    ok = ctx->eval(more).ok();
    n_alloc = counting.count();
  }
  ASSERT_TRUE(ok);
  EXPECT_EQ(n_alloc, 0) << "heap allocations in 3 warm prefill segments";
}

TEST_P(SteadyState, BatchedDecodeStepsAllocateNothing) {
  std::vector<std::unique_ptr<LlamaContext>> owned;
  std::vector<LlamaContext*> ctxs;
  for (int i = 0; i < 3; ++i) {
    owned.push_back(make());
    ctxs.push_back(owned.back().get());
    ASSERT_TRUE(ctxs.back()->eval(tokens(3 * kSegment + 5 * i, 10 + i)).ok());
  }
  std::vector<TokenId> step = {11, 12, 13};
  ASSERT_TRUE(LlamaContext::eval_each(ctxs, step).ok());  // the calling thread's buffers
  bool ok = true;
  int64_t n_alloc = 0;
  {
    Counting counting;
    for (int i = 0; i < 2 * kSegment; ++i) {
      for (size_t c = 0; c < step.size(); ++c) step[c] = TokenId((i * 31 + int(c) * 7) % 1000);
      ok = ok && LlamaContext::eval_each(ctxs, step).ok();
    }
    n_alloc = counting.count();
  }
  ASSERT_TRUE(ok);
  EXPECT_EQ(n_alloc, 0) << "heap allocations in " << 2 * kSegment << " warm batched steps of 3 sessions";
}

// The counter counts: a test that could not fail would prove nothing.
TEST(CountingAllocator, SeesAnAllocationOnAPoolThread) {
  kernels::cpu::ThreadPool pool(2);
  int64_t n_alloc = 0;
  {
    Counting counting;
    pool.run(2, [](int64_t) { std::make_unique<std::vector<int>>(100).reset(); });
    n_alloc = counting.count();
  }
  EXPECT_GE(n_alloc, 2);
}

INSTANTIATE_TEST_SUITE_P(EveryPolicyAndType, SteadyState,
                         ::testing::Values(Case{"full", KvType::kF32}, Case{"full", KvType::kF16},
                                           Case{"full", KvType::kQ8_0}, Case{"streaming", KvType::kF32},
                                           Case{"streaming", KvType::kF16}, Case{"streaming", KvType::kQ8_0},
                                           Case{"snapkv", KvType::kF32}, Case{"snapkv", KvType::kQ8_0},
                                           Case{"pyramidkv", KvType::kF16}, Case{"pyramidkv", KvType::kQ8_0},
                                           Case{"edgeinfinite", KvType::kF32}, Case{"edgeinfinite", KvType::kF16},
                                           Case{"edgeinfinite", KvType::kQ8_0}),
                         case_name);

}  // namespace
}  // namespace edgeinf
