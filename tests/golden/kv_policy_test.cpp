// KV policies checked by their invariants on real weights:
//  - total tokens <= S + W + L: edgeinfinite (with a non-zero gate) is bit-identical to full;
//  - gate forced to 0: edgeinfinite equals streaming with the same S, W, L, bit for bit;
//  - the identity query projection reads the memory as none does, bit for bit, and no projection
//    changes anything below tau;
//  - a budget that holds the whole input: streaming equals full;
//  - the state of edgeinfinite and streaming has the same size after 16K, 64K and 128K tokens,
//    and the exact part never holds more than S + W + L entries;
//  - f16 and q8 entries take half and 34/128 of f32's bytes (the memory stays f32).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>

#include "engine/kv/memory_gate.h"
#include "engine/runtime/llama_context.h"
#include "tests/cpu_backends.h"
#include "tests/must.h"
#include "tests/test_paths.h"

namespace edgeinf {
namespace {

const LlamaModel& real_model() {
  static const LlamaModel* model = [] {
    return testing::must(LlamaModel::load(testing::test_model_path()), "the real model").release();
  }();
  return *model;
}

std::vector<TokenId> tokens(int n, int n_vocab, uint64_t seed = 7) {
  std::vector<TokenId> out(static_cast<size_t>(n));
  uint64_t x = seed;
  for (TokenId& t : out) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    t = TokenId(100 + (x >> 33) % uint64_t(n_vocab - 100));
  }
  return out;
}

// Teacher-forced logits of every position, in batches of `batch`.
std::vector<float> all_logits(const LlamaModel& model, const KvPolicyOptions& kv, const std::vector<TokenId>& toks,
                              int batch) {
  kernels::cpu::ThreadPool pool(2);
  testing::CpuBackends cpu(pool);
  LlamaContextOptions opt;
  opt.kv = kv;
  opt.n_batch = batch;
  auto ctx = testing::must(LlamaContext::create(cpu(model), opt), "LlamaContext::create");
  std::vector<float> out;
  for (size_t b = 0; b < toks.size(); b += size_t(batch)) {
    const size_t n = std::min(size_t(batch), toks.size() - b);
    const auto l = testing::must(ctx->eval_all_logits(std::span<const TokenId>(toks.data() + b, n)), "eval");
    out.insert(out.end(), l.begin(), l.end());
  }
  return out;
}

KvPolicyOptions window_options(const std::string& name, int sink, int window, int segment) {
  KvPolicyOptions o;
  o.name = name;
  o.sink = sink;
  o.window = window;
  o.segment = segment;
  return o;
}

void expect_bit_identical(const std::vector<float>& a, const std::vector<float>& b, int n_vocab) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(std::memcmp(&a[i], &b[i], sizeof(float)), 0)
        << "position " << i / size_t(n_vocab) << " token " << i % size_t(n_vocab) << ": " << a[i] << " vs " << b[i];
  }
}

TEST(KvPolicy, EdgeInfiniteBelowTauIsBitIdenticalToFull) {
  const LlamaModel& m = real_model();
  const int n_vocab = m.config().n_vocab;
  const int S = 4, W = 64, L = 32;
  const std::vector<TokenId> toks = tokens(S + W + L, n_vocab);  // exactly tau
  KvPolicyOptions full;
  full.n_ctx = 256;
  // A gate that would mix heavily if the memory were ever read.
  MemoryGate gate({GateKind::kScalar, S, W, L}, AttentionShape::of(m), 3.0f);
  KvPolicyOptions ei = window_options("edgeinfinite", S, W, L);
  ei.gate = &gate;
  const std::vector<float> want = all_logits(m, full, toks, L);
  expect_bit_identical(all_logits(m, ei, toks, L), want, n_vocab);
  // A query projection changes only how the memory is read: never below tau.
  MemoryGate projected = gate;
  projected.add_query_projection();
  for (int il = 0; il < projected.n_layer(); ++il) {
    for (size_t i = 0; i < projected.query(il).size(); ++i) projected.query(il)[i] += 0.1f * std::sin(float(i));
  }
  ei.gate = &projected;
  expect_bit_identical(all_logits(m, ei, toks, L), want, n_vocab);
}

TEST(KvPolicy, EdgeInfiniteWithGateZeroEqualsStreaming) {
  const LlamaModel& m = real_model();
  const int n_vocab = m.config().n_vocab;
  const int S = 4, W = 48, L = 16;
  const std::vector<TokenId> toks = tokens(200, n_vocab, 11);  // several folds
  MemoryGate zero({GateKind::kScalar, S, W, L}, AttentionShape::of(m), -INFINITY);
  KvPolicyOptions ei = window_options("edgeinfinite", S, W, L);
  ei.gate = &zero;
  const std::vector<float> a = all_logits(m, ei, toks, L);
  const std::vector<float> b = all_logits(m, window_options("streaming", S, W, L), toks, L);
  expect_bit_identical(a, b, n_vocab);
  // And the memory does change the output once the gate opens.
  MemoryGate open({GateKind::kScalar, S, W, L}, AttentionShape::of(m), 0.0f);
  ei.gate = &open;
  const std::vector<float> c = all_logits(m, ei, toks, L);
  // Batches that end within S + W + L tokens fold nothing and read nothing.
  const size_t tau_end = size_t((S + W + L) / L * L) * size_t(n_vocab);
  EXPECT_EQ(std::memcmp(c.data(), b.data(), tau_end * sizeof(float)), 0) << "before the first fold";
  EXPECT_NE(std::memcmp(c.data() + tau_end, b.data() + tau_end, (c.size() - tau_end) * sizeof(float)), 0);

  // The identity query projection reads the memory as no projection does, bit for bit; another
  // projection reads it differently.
  MemoryGate identity = open;
  identity.add_query_projection();
  ei.gate = &identity;
  expect_bit_identical(all_logits(m, ei, toks, L), c, n_vocab);
  MemoryGate turned = identity;
  for (int il = 0; il < turned.n_layer(); ++il) {
    for (size_t i = 0; i < turned.query(il).size(); ++i) turned.query(il)[i] *= 1.5f;
  }
  ei.gate = &turned;
  const std::vector<float> e = all_logits(m, ei, toks, L);
  EXPECT_EQ(std::memcmp(e.data(), c.data(), tau_end * sizeof(float)), 0) << "before the first fold";
  EXPECT_NE(std::memcmp(e.data() + tau_end, c.data() + tau_end, (c.size() - tau_end) * sizeof(float)), 0);
}

TEST(KvPolicy, StreamingWithRoomForEverythingEqualsFull) {
  const LlamaModel& m = real_model();
  const std::vector<TokenId> toks = tokens(90, m.config().n_vocab, 5);
  KvPolicyOptions full;
  full.n_ctx = 128;
  expect_bit_identical(all_logits(m, window_options("streaming", 4, 80, 16), toks, 16), all_logits(m, full, toks, 16),
                       m.config().n_vocab);
}

TEST(KvPolicy, SelectionPoliciesWithBudgetForEverythingEqualFull) {
  const LlamaModel& m = real_model();
  const std::vector<TokenId> toks = tokens(90, m.config().n_vocab, 9);
  KvPolicyOptions full;
  full.n_ctx = 128;
  const std::vector<float> want = all_logits(m, full, toks, 16);
  KvPolicyOptions snap;
  snap.name = "snapkv";
  snap.budget = 96;
  snap.segment = 16;
  expect_bit_identical(all_logits(m, snap, toks, 16), want, m.config().n_vocab);
  // PyramidKV's smallest (top) layer budget is about (B - w) / beta + w: make that >= 90 too.
  KvPolicyOptions pyr = snap;
  pyr.name = "pyramidkv";
  pyr.budget = 1800;
  expect_bit_identical(all_logits(m, pyr, toks, 16), want, m.config().n_vocab);
}

TEST(KvPolicy, SelectionPoliciesStayWithinTheirBudget) {
  const LlamaModel& m = real_model();
  kernels::cpu::ThreadPool pool(2);
  testing::CpuBackends cpu(pool);
  for (const char* name : {"snapkv", "pyramidkv"}) {
    LlamaContextOptions opt;
    opt.kv.name = name;
    opt.kv.budget = 64;
    opt.kv.segment = 32;
    opt.n_batch = 32;
    auto ctx = LlamaContext::create(cpu(m), opt);
    ASSERT_TRUE(ctx.ok()) << ctx.status();
    const std::vector<TokenId> toks = tokens(300, m.config().n_vocab, 4);
    ASSERT_TRUE((*ctx)->eval(toks).ok());
    for (int i = 0; i < 40; ++i) ASSERT_TRUE((*ctx)->eval(std::span<const TokenId>(&toks[size_t(i)], 1)).ok());
    // The bottom layer keeps the most; no layer ever holds more than its budget + one segment.
    EXPECT_LE((*ctx)->policy().n_kept(), std::string(name) == "snapkv" ? 64 + 32 : 2 * (64 - 8) + 8 + 32) << name;
    EXPECT_EQ((*ctx)->policy().n_seen(), 340);
    EXPECT_GT((*ctx)->policy().n_compressed(), 0) << name;
  }
}

TEST(KvPolicy, StateGrowsToItsBoundAndStaysThereFor16K64K128KTokens) {
  // A tiny model keeps this fast; the state sizes follow from the shapes alone.
  auto m = LlamaModel::load(testing::golden_dir() + "/tiny_gqa_odd.gguf");
  ASSERT_TRUE(m.ok()) << m.status() << " (the golden_reference test writes the tiny models)";
  const int S = 4, W = 256, L = 64;
  kernels::cpu::ThreadPool pool(2);
  testing::CpuBackends cpu(pool);
  for (const char* name : {"streaming", "edgeinfinite"}) {
    MemoryGate gate({GateKind::kScalar, S, W, L}, AttentionShape::of(**m), 0.0f);
    LlamaContextOptions opt;
    opt.kv = window_options(name, S, W, L);
    opt.kv.gate = &gate;
    opt.n_batch = L;
    auto ctx = LlamaContext::create(cpu(**m), opt);
    ASSERT_TRUE(ctx.ok()) << ctx.status();
    // Empty at first (edgeinfinite: only its fixed memory): the state grows with the tokens held,
    // up to its bound.
    const size_t at_start = (*ctx)->policy().state_bytes(), bound = (*ctx)->policy().max_state_bytes();
    EXPECT_LT(at_start, bound / 4) << name;
    if (std::string(name) == "streaming") {
      EXPECT_EQ(at_start, 0u);
    }
    const std::vector<TokenId> toks = tokens(128 * 1024, (*m)->config().n_vocab, 3);
    std::vector<size_t> bytes;
    for (size_t b = 0; b < toks.size(); b += size_t(L)) {
      ASSERT_TRUE((*ctx)->eval(std::span<const TokenId>(toks.data() + b, size_t(L))).ok());
      ASSERT_LE((*ctx)->policy().n_kept(), S + W + L);
      const size_t seen = b + size_t(L);
      if (seen == 16 * 1024 || seen == 64 * 1024 || seen == 128 * 1024) bytes.push_back((*ctx)->policy().state_bytes());
    }
    ASSERT_EQ(bytes.size(), 3u);
    // The rows the window has used at most (its bound less what the segment plan never fills).
    EXPECT_LE(bytes[0], bound) << name;
    EXPECT_GT(bytes[0], bound - bound / 8) << name;
    EXPECT_EQ(bytes[1], bytes[0]) << name;
    EXPECT_EQ(bytes[2], bytes[0]) << name;
    EXPECT_EQ((*ctx)->policy().n_seen(), 128 * 1024);
    EXPECT_EQ((*ctx)->policy().n_compressed(), 128 * 1024 - (*ctx)->policy().n_kept());
    std::printf("%-13s state %zu bytes after 16K, 64K and 128K tokens\n", name, bytes[0]);
  }
}

// A session's state bytes on the real model's shape (SmolLM2-135M: 30 layers, 3 KV heads of 64),
// S = 4, W = 1020, L = 512, full at 8K: f16 halves the exact entries, q8 keeps 34 bytes of every
// 128 (int8 values and an fp16 scale per 32); EdgeInfinite's compressed memory stays f32.
TEST(KvPolicy, EncodedEntriesShrinkTheRealModelsState) {
  const AttentionShape shape = AttentionShape::of(real_model());
  for (const char* name : {"full", "streaming", "edgeinfinite", "snapkv", "pyramidkv"}) {
    size_t bytes[3] = {0, 0, 0};
    int i = 0;
    for (KvType type : {KvType::kF32, KvType::kF16, KvType::kQ8_0}) {
      KvPolicyOptions o = window_options(name, 4, 1020, 512);
      o.n_ctx = 8192;
      o.kv_type = type;
      auto policy = make_kv_policy(o, shape);
      ASSERT_TRUE(policy.ok()) << name << " " << kv_type_name(type) << ": " << policy.status();
      bytes[i++] = (*policy)->max_state_bytes();
    }
    const size_t memory = std::string(name) == "edgeinfinite"
                              ? size_t(shape.n_layer) * size_t(shape.n_kv_head) *
                                    size_t(shape.head_dim * shape.head_dim + shape.head_dim) * sizeof(float)
                              : 0;
    std::printf("%-13s state at most: f32 %.2f MiB, f16 %.2f MiB (%.1f %%), q8 %.2f MiB (%.1f %%)\n", name,
                double(bytes[0]) / (1 << 20), double(bytes[1]) / (1 << 20), 100.0 * double(bytes[1]) / double(bytes[0]),
                double(bytes[2]) / (1 << 20), 100.0 * double(bytes[2]) / double(bytes[0]));
    EXPECT_EQ(bytes[1] - memory, (bytes[0] - memory) / 2) << name;
    EXPECT_EQ((bytes[2] - memory) * 128, (bytes[0] - memory) * 34) << name;
    EXPECT_LE(double(bytes[2]), 0.30 * double(bytes[0])) << name;
  }
}

}  // namespace
}  // namespace edgeinf
