// The CUDA backend against the CPU backend, whole model: logits of random models of every weight
// type and both rotation styles (and of the real model when it is present), for prefill in GEMV-
// and GEMM-sized batches and for decode, under full, streaming and edgeinfinite (no gate, scalar
// gate, linear gate) with folding; batched decode against single streams; and sessions moving
// between the devices through snapshots and through deltas. Without a device every test skips with the reason.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "engine/backend/backend.h"
#include "engine/kv/memory_gate.h"
#include "engine/model/gguf_writer.h"
#include "engine/runtime/llama_context.h"
#include "kernels/reference/dequantize.h"
#include "tests/cpu_backends.h"
#include "tests/must.h"
#include "tests/test_paths.h"
#include "tests/tolerances.h"

namespace edgeinf {
namespace {

using testing::kDeviceLogitsRandomModel;
using testing::kDeviceLogitsRealModel;

using kernels::WeightType;

struct ModelSpec {
  std::string arch;  // llama: adjacent-pair rotation; qwen2: neox rotation and QKV biases
  int n_layer, n_embd, n_head, n_kv_head, n_ff, n_vocab;
  WeightType embd, weights, output;  // output F32 with tied = no output tensor
  bool tied_output, freq_factors;
};

std::vector<float> normal(size_t n, std::mt19937& rng, float mean, float stddev) {
  std::normal_distribution<float> d(mean, stddev);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// A random-weight model of the spec, as GGUF bytes.
std::vector<uint8_t> random_model(const ModelSpec& s, uint32_t seed) {
  std::mt19937 rng(seed);
  GgufWriter w;
  const std::string a = s.arch + ".";
  w.kv_str("general.architecture", s.arch);
  w.kv_str("general.name", "random " + s.arch);
  w.kv_u32(a + "block_count", uint32_t(s.n_layer));
  w.kv_u32(a + "embedding_length", uint32_t(s.n_embd));
  w.kv_u32(a + "feed_forward_length", uint32_t(s.n_ff));
  w.kv_u32(a + "attention.head_count", uint32_t(s.n_head));
  w.kv_u32(a + "attention.head_count_kv", uint32_t(s.n_kv_head));
  w.kv_u32(a + "context_length", 2048);
  w.kv_f32(a + "rope.freq_base", 10000.0f);
  auto matrix = [&](const std::string& name, int64_t n_in, int64_t n_out, WeightType type, float stddev) {
    const std::vector<float> f = normal(size_t(n_in * n_out), rng, 0.0f, stddev);
    const int64_t rb = int64_t(kernels::row_bytes(type, n_in));
    std::vector<uint8_t> data(size_t(rb * n_out));
    for (int64_t r = 0; r < n_out; ++r)
      kernels::reference::quantize_row(type, f.data() + r * n_in, data.data() + r * rb, n_in);
    w.tensor(name, {n_in, n_out}, uint32_t(type), std::move(data));
  };
  auto vec = [&](const std::string& name, int64_t n, float mean, float stddev) {
    w.tensor_f32(name, {n}, normal(size_t(n), rng, mean, stddev));
  };
  const int head_dim = s.n_embd / s.n_head;
  const int64_t q_dim = s.n_embd, kv_dim = int64_t(s.n_kv_head) * head_dim;
  matrix("token_embd.weight", s.n_embd, s.n_vocab, s.embd, 1.0f);
  if (!s.tied_output) matrix("output.weight", s.n_embd, s.n_vocab, s.output, 0.1f);
  vec("output_norm.weight", s.n_embd, 1.0f, 0.1f);
  if (s.freq_factors) vec("rope_freqs.weight", head_dim / 2, 1.5f, 0.2f);
  for (int il = 0; il < s.n_layer; ++il) {
    const std::string b = "blk." + std::to_string(il) + ".";
    vec(b + "attn_norm.weight", s.n_embd, 1.0f, 0.1f);
    matrix(b + "attn_q.weight", s.n_embd, q_dim, s.weights, 0.15f);
    matrix(b + "attn_k.weight", s.n_embd, kv_dim, s.weights, 0.15f);
    matrix(b + "attn_v.weight", s.n_embd, kv_dim, s.weights, 0.1f);
    matrix(b + "attn_output.weight", q_dim, s.n_embd, s.weights, 0.05f);
    if (s.arch == "qwen2") {
      vec(b + "attn_q.bias", q_dim, 0.0f, 0.2f);
      vec(b + "attn_k.bias", kv_dim, 0.0f, 0.2f);
      vec(b + "attn_v.bias", kv_dim, 0.0f, 0.2f);
    }
    vec(b + "ffn_norm.weight", s.n_embd, 1.0f, 0.1f);
    matrix(b + "ffn_gate.weight", s.n_embd, s.n_ff, s.weights, 0.1f);
    matrix(b + "ffn_up.weight", s.n_embd, s.n_ff, s.weights, 0.1f);
    matrix(b + "ffn_down.weight", s.n_ff, s.n_embd, s.weights, 0.05f);
  }
  return w.bytes();
}

// K-quants need rows of multiples of 256.
const ModelSpec kSpecs[] = {
    {"llama", 2, 256, 8, 2, 512, 301, WeightType::kQ8_0, WeightType::kQ4_1, WeightType::kQ6_K, false, false},
    {"qwen2", 3, 256, 4, 1, 768, 257, WeightType::kF16, WeightType::kQ4_K, WeightType::kF32, true, false},
    {"llama", 2, 256, 4, 2, 512, 199, WeightType::kQ6_K, WeightType::kQ8_0, WeightType::kQ4_K, false, true},
};

std::string spec_name(const ModelSpec& s) {
  return s.arch + "/" + kernels::weight_type_traits(uint32_t(s.weights))->name;
}

std::unique_ptr<LlamaModel> load_model(const std::vector<uint8_t>& bytes) {
  return testing::must(LlamaModel::from_gguf(testing::must(GgufFile::parse(bytes), "GGUF")), "model");
}

std::vector<TokenId> random_tokens(size_t n, int n_vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> d(0, n_vocab - 1);
  std::vector<TokenId> out(n);
  for (TokenId& t : out) t = d(rng);
  return out;
}

// The CUDA backend of a model, or a skip with the reason.
#define OPEN_CUDA_OR_SKIP(backend, model)                                                         \
  auto backend##_or = make_cuda_backend(model);                                                   \
  if (!backend##_or.ok()) GTEST_SKIP() << "no CUDA backend: " << backend##_or.status().message(); \
  std::unique_ptr<ModelBackend> backend = std::move(*backend##_or)

float max_rel_diff(std::span<const float> got, std::span<const float> want) {
  float scale = 0.0f, diff = 0.0f;
  for (size_t i = 0; i < want.size(); ++i) {
    scale = std::max(scale, std::fabs(want[i]));
    diff = std::max(diff, std::fabs(got[i] - want[i]));
    if (!std::isfinite(got[i])) return INFINITY;
  }
  return diff / std::max(scale, 1e-6f);
}

// The policies compared, with a small window so that folding and shifting happen within ~100 tokens.
struct PolicyCase {
  std::string label;
  KvPolicyOptions kv;
};

std::vector<PolicyCase> policy_cases(const MemoryGate* scalar, const MemoryGate* linear) {
  std::vector<PolicyCase> out;
  KvPolicyOptions full;
  full.name = "full";
  full.n_ctx = 256;
  out.push_back({"full", full});
  KvPolicyOptions window;
  window.sink = 2;
  window.window = 24;
  window.segment = 16;
  window.name = "streaming";
  out.push_back({"streaming", window});
  window.name = "edgeinfinite";
  out.push_back({"edgeinfinite, no gate", window});
  window.gate = scalar;
  out.push_back({"edgeinfinite, scalar gate", window});
  window.gate = linear;
  window.update = MemoryUpdate::kLinear;
  out.push_back({"edgeinfinite, linear gate, linear update", window});
  // Exact entries stored as f16 and q8: both devices encode, decode and re-rotate them alike.
  full.kv_type = KvType::kQ8_0;
  out.push_back({"full, q8 KV", full});
  window.name = "streaming";
  window.gate = nullptr;
  window.update = MemoryUpdate::kDelta;
  window.kv_type = KvType::kF16;
  out.push_back({"streaming, f16 KV", window});
  window.name = "edgeinfinite";
  window.gate = scalar;
  window.kv_type = KvType::kQ8_0;
  out.push_back({"edgeinfinite, scalar gate, q8 KV", window});
  return out;
}

// The logits tolerance of a case: encoded entries add the rounding steps the two devices' slightly
// different keys and values can land on either side of.
double logits_tolerance(const KvPolicyOptions& kv) {
  return kv.kv_type == KvType::kF32 ? kDeviceLogitsRandomModel : testing::kDeviceLogitsEncodedKv;
}

std::unique_ptr<LlamaContext> make_context(ModelBackend& backend, const KvPolicyOptions& kv, int n_batch) {
  LlamaContextOptions o;
  o.kv = kv;
  o.n_batch = n_batch;
  auto c = LlamaContext::create(backend, o);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? std::move(*c) : nullptr;
}

// Random gates of both kinds for a model (the scalar one half open, the linear one token-dependent).
struct Gates {
  std::unique_ptr<MemoryGate> scalar, linear;
  explicit Gates(const LlamaModel& m) {
    const AttentionShape s = AttentionShape::of(m);
    GateConfig c;
    scalar = std::make_unique<MemoryGate>(c, s, 0.0f);
    c.kind = GateKind::kLinear;
    linear = std::make_unique<MemoryGate>(c, s, -0.5f);
    std::mt19937 rng(99);
    std::normal_distribution<float> d(0.0f, 0.05f);
    for (int il = 0; il < s.n_layer; ++il) {
      for (float& w : linear->weight(il)) w = d(rng);
      scalar->bias(il)[size_t(il % s.n_head)] = 1.5f;
    }
  }
};

TEST(CudaBackend, LogitsMatchTheCpuBackendEveryPolicyAndWeightType) {
  for (const ModelSpec& spec : kSpecs) {
    const std::vector<uint8_t> bytes = random_model(spec, 7);
    std::unique_ptr<LlamaModel> model = load_model(bytes);
    ASSERT_NE(model, nullptr);
    OPEN_CUDA_OR_SKIP(backend, *model);
    Gates gates(*model);
    kernels::cpu::ThreadPool pool(2);
    testing::CpuBackends host(pool);
    const std::vector<TokenId> tokens = random_tokens(140, spec.n_vocab, 11);
    for (const PolicyCase& pc : policy_cases(gates.scalar.get(), gates.linear.get())) {
      SCOPED_TRACE(spec_name(spec) + ", " + pc.label);
      const int n_batch = pc.kv.name == "full" ? 64 : 16;
      auto cpu = make_context(host(*model), pc.kv, n_batch);
      auto gpu = make_context(*backend, pc.kv, n_batch);
      ASSERT_TRUE(cpu && gpu);
      EXPECT_EQ(&gpu->backend(), backend.get());
      // Prefill in batches of every size class (1, GEMV <= 8, GEMM > 8), all rows compared once.
      size_t fed = 0;
      for (size_t n : {size_t(16), size_t(5), size_t(1), size_t(13), size_t(8), size_t(16), size_t(9), size_t(16),
                       size_t(16), size_t(12)}) {
        const std::span<const TokenId> chunk(tokens.data() + fed, n);
        auto want = cpu->eval_all_logits(chunk);
        std::vector<float> want_copy(want->begin(), want->end());
        auto got = gpu->eval_all_logits(chunk);
        ASSERT_TRUE(want.ok() && got.ok()) << want.status() << " " << got.status();
        const size_t v = size_t(spec.n_vocab);
        for (size_t r = 0; r < n; ++r) {
          EXPECT_LE(max_rel_diff(got->subspan(r * v, v), std::span<const float>(want_copy).subspan(r * v, v)),
                    logits_tolerance(pc.kv))
              << "prefill row " << fed + r;
        }
        fed += n;
      }
      EXPECT_EQ(gpu->n_past(), cpu->n_past());
      EXPECT_EQ(gpu->policy().n_kept(), cpu->policy().n_kept());
      EXPECT_EQ(gpu->policy().n_compressed(), cpu->policy().n_compressed());
      if (pc.kv.name != "full") {
        EXPECT_GT(gpu->policy().n_compressed(), 0) << "the test must fold";
      }
      // Decode.
      for (size_t i = fed; i < tokens.size(); ++i) {
        const std::span<const TokenId> one(tokens.data() + i, 1);
        auto want = cpu->eval(one);
        std::vector<float> want_copy(want->begin(), want->end());
        auto got = gpu->eval(one);
        ASSERT_TRUE(want.ok() && got.ok());
        EXPECT_LE(max_rel_diff(*got, want_copy), logits_tolerance(pc.kv)) << "decode token " << i;
      }
    }
  }
}

TEST(CudaBackend, BatchedDecodeEqualsSingleStreamsAndMixesWithCpuContexts) {
  const std::vector<uint8_t> bytes = random_model(kSpecs[0], 8);
  std::unique_ptr<LlamaModel> model = load_model(bytes);
  OPEN_CUDA_OR_SKIP(backend, *model);
  Gates gates(*model);
  kernels::cpu::ThreadPool pool(2);
  testing::CpuBackends host(pool);
  const std::vector<PolicyCase> cases = policy_cases(gates.scalar.get(), gates.linear.get());
  // Twin contexts per policy on the device (batched vs alone), plus one CPU context in the batch.
  std::vector<std::unique_ptr<LlamaContext>> batched, alone;
  for (size_t i = 0; i < cases.size(); ++i) {
    const int n_batch = cases[i].kv.name == "full" ? 64 : 16;
    batched.push_back(make_context(*backend, cases[i].kv, n_batch));
    alone.push_back(make_context(*backend, cases[i].kv, n_batch));
    const std::vector<TokenId> history = random_tokens(30 + 7 * i, kSpecs[0].n_vocab, uint32_t(20 + i));
    ASSERT_TRUE(batched.back()->eval(history).ok());
    ASSERT_TRUE(alone.back()->eval(history).ok());
  }
  auto cpu_batched = make_context(host(*model), cases[2].kv, 16);
  auto cpu_alone = make_context(host(*model), cases[2].kv, 16);
  std::vector<LlamaContext*> group;
  for (auto& c : batched) group.push_back(c.get());
  group.insert(group.begin() + 2, cpu_batched.get());
  for (int step = 0; step < 40; ++step) {
    const std::vector<TokenId> toks = random_tokens(group.size(), kSpecs[0].n_vocab, uint32_t(100 + step));
    const Status got = LlamaContext::eval_each(group, toks);
    ASSERT_TRUE(got.ok()) << got;
    for (size_t i = 0; i < group.size(); ++i) {
      LlamaContext* twin = group[i] == cpu_batched.get() ? cpu_alone.get() : alone[i < 2 ? i : i - 1].get();
      auto want = twin->eval(std::span<const TokenId>(&toks[i], 1));
      ASSERT_TRUE(want.ok());
      ASSERT_TRUE(std::equal(want->begin(), want->end(), group[i]->logits().begin()))
          << "stream " << i << ", step " << step;
    }
  }
}

// Snapshot bytes of a context's policy.
std::string save(const LlamaContext& c) {
  std::string bytes;
  ByteWriter w(&bytes);
  EXPECT_TRUE(c.policy().save(w).ok());
  return bytes;
}

TEST(CudaBackend, SessionsMoveBetweenDevicesThroughSnapshots) {
  const std::vector<uint8_t> bytes = random_model(kSpecs[1], 9);
  std::unique_ptr<LlamaModel> model = load_model(bytes);
  OPEN_CUDA_OR_SKIP(backend, *model);
  Gates gates(*model);
  kernels::cpu::ThreadPool pool(2);
  testing::CpuBackends host(pool);
  const std::vector<TokenId> history = random_tokens(90, kSpecs[1].n_vocab, 31);
  const std::vector<TokenId> next = random_tokens(12, kSpecs[1].n_vocab, 32);
  for (const PolicyCase& pc : policy_cases(gates.scalar.get(), gates.linear.get())) {
    SCOPED_TRACE(pc.label);
    const int n_batch = pc.kv.name == "full" ? 64 : 16;
    auto gpu = make_context(*backend, pc.kv, n_batch);
    auto cpu = make_context(host(*model), pc.kv, n_batch);
    ASSERT_TRUE(gpu->eval(history).ok());
    ASSERT_TRUE(cpu->eval(history).ok());
    const std::string from_gpu = save(*gpu), from_cpu = save(*cpu);
    // The same format: equal sizes, equal counters (the leading bytes before the first floats).
    ASSERT_EQ(from_gpu.size(), from_cpu.size());
    EXPECT_EQ(from_gpu.substr(0, 16), from_cpu.substr(0, 16));
    // GPU -> CPU and CPU -> GPU, then both continue; each must match the context it came from.
    auto cpu_moved = make_context(host(*model), pc.kv, n_batch);
    auto gpu_moved = make_context(*backend, pc.kv, n_batch);
    ByteReader r1(from_gpu, "snapshot"), r2(from_cpu, "snapshot");
    ASSERT_TRUE(cpu_moved->policy().restore(r1).ok());
    ASSERT_TRUE(gpu_moved->policy().restore(r2).ok());
    EXPECT_EQ(r1.remaining(), 0u);
    EXPECT_EQ(r2.remaining(), 0u);
    EXPECT_EQ(gpu_moved->n_past(), cpu->n_past());
    EXPECT_EQ(cpu_moved->policy().n_compressed(), gpu->policy().n_compressed());
    // All four continue from the same point.
    for (TokenId t : next) {
      const std::span<const TokenId> one(&t, 1);
      auto g = gpu->eval(one);
      std::vector<float> from_gpu_logits(g->begin(), g->end());
      auto cm = cpu_moved->eval(one);
      std::vector<float> moved_to_cpu(cm->begin(), cm->end());
      auto c = cpu->eval(one);
      std::vector<float> from_cpu_logits(c->begin(), c->end());
      auto gm = gpu_moved->eval(one);
      EXPECT_LE(max_rel_diff(moved_to_cpu, from_gpu_logits), logits_tolerance(pc.kv)) << "GPU session on the CPU";
      EXPECT_LE(max_rel_diff(*gm, from_cpu_logits), logits_tolerance(pc.kv)) << "CPU session on the GPU";
    }
    // A truncated snapshot is refused and leaves the device context empty, not half written.
    auto broken = make_context(*backend, pc.kv, n_batch);
    ASSERT_TRUE(broken->eval(history).ok());
    ByteReader cut(std::string_view(from_cpu).substr(0, from_cpu.size() / 2), "snapshot");
    const Status st = broken->policy().restore(cut);
    EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss) << st;
    EXPECT_EQ(broken->n_past(), 0);
  }
}

// Deltas (what a turn changed) taken on the device apply on the CPU and the other way round: the
// policies are the same code, their arrays in a store on each side.
TEST(CudaBackend, DeltaSnapshotsMoveBetweenDevices) {
  const std::vector<uint8_t> bytes = random_model(kSpecs[1], 12);
  std::unique_ptr<LlamaModel> model = load_model(bytes);
  OPEN_CUDA_OR_SKIP(backend, *model);
  Gates gates(*model);
  kernels::cpu::ThreadPool pool(2);
  testing::CpuBackends host(pool);
  for (const PolicyCase& pc : policy_cases(gates.scalar.get(), gates.linear.get())) {
    SCOPED_TRACE(pc.label);
    const int n_batch = pc.kv.name == "full" ? 64 : 16;
    auto gpu = make_context(*backend, pc.kv, n_batch);
    auto cpu = make_context(host(*model), pc.kv, n_batch);
    auto gpu_replica = make_context(*backend, pc.kv, n_batch);
    auto cpu_replica = make_context(host(*model), pc.kv, n_batch);
    int n_deltas = 0, seed = 50;
    for (int n : {7, 20, 3, 33, 9, 41, 5}) {
      const std::vector<TokenId> turn = random_tokens(n, kSpecs[1].n_vocab, uint64_t(seed++));
      ASSERT_TRUE(gpu->eval(turn).ok());
      ASSERT_TRUE(cpu->eval(turn).ok());
      std::string from_gpu, from_cpu;
      ByteWriter wg(&from_gpu), wc(&from_cpu);
      const bool dg = testing::must(gpu->policy().save_delta(wg), "save_delta on the device");
      const bool dc = testing::must(cpu->policy().save_delta(wc), "save_delta on the CPU");
      ASSERT_EQ(dg, dc);
      if (dg) {
        ++n_deltas;
        EXPECT_EQ(from_gpu.size(), from_cpu.size());
        ByteReader rg(from_gpu, "delta"), rc(from_cpu, "delta");
        ASSERT_TRUE(cpu_replica->policy().apply_delta(rg, pool).ok());
        ASSERT_TRUE(gpu_replica->policy().apply_delta(rc, pool).ok());
      } else {
        const std::string whole_gpu = save(*gpu), whole_cpu = save(*cpu);
        ByteReader rg(whole_gpu, "snapshot"), rc(whole_cpu, "snapshot");
        ASSERT_TRUE(cpu_replica->policy().restore(rg).ok());
        ASSERT_TRUE(gpu_replica->policy().restore(rc).ok());
      }
      gpu->policy().mark_saved();
      cpu->policy().mark_saved();
    }
    EXPECT_GE(n_deltas, 3);
    const std::vector<TokenId> next = random_tokens(6, kSpecs[1].n_vocab, 99);
    auto a = cpu_replica->eval(next);
    std::vector<float> moved_to_cpu(a->begin(), a->end());
    auto g = gpu->eval(next);
    EXPECT_LE(max_rel_diff(moved_to_cpu, std::vector<float>(g->begin(), g->end())), logits_tolerance(pc.kv));
    auto c = cpu->eval(next);
    auto gm = gpu_replica->eval(next);
    EXPECT_LE(max_rel_diff(std::vector<float>(gm->begin(), gm->end()), std::vector<float>(c->begin(), c->end())),
              logits_tolerance(pc.kv));
  }
}

TEST(CudaBackend, RefusesPoliciesWithoutADeviceForm) {
  const std::vector<uint8_t> bytes = random_model(kSpecs[0], 10);
  std::unique_ptr<LlamaModel> model = load_model(bytes);
  OPEN_CUDA_OR_SKIP(backend, *model);
  for (const char* name : {"snapkv", "pyramidkv"}) {
    EXPECT_FALSE(backend->supports(name));
    LlamaContextOptions o;
    o.kv.name = name;
    auto c = LlamaContext::create(*backend, o);
    ASSERT_FALSE(c.ok());
    EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << c.status();
  }
}

TEST(CudaBackend, RealModelLogitsMatchTheCpuBackend) {
  // The model is part of the set-up: missing, it is a failure, not a skip.
  auto loaded = LlamaModel::load(testing::test_model_path());
  ASSERT_TRUE(loaded.ok()) << loaded.status() << " (scripts/setup installs the model)";
  const LlamaModel& model = **loaded;
  OPEN_CUDA_OR_SKIP(backend, model);
  auto gate = load_default_gate(testing::test_model_path(), "", AttentionShape::of(model), model.gguf().fingerprint());
  ASSERT_TRUE(gate.ok()) << gate.status();
  kernels::cpu::ThreadPool pool(4);
  testing::CpuBackends host(pool);
  const std::vector<TokenId> tokens = random_tokens(400, model.config().n_vocab, 41);
  KvPolicyOptions full;
  full.n_ctx = 512;
  KvPolicyOptions edge;
  edge.name = "edgeinfinite";
  edge.sink = 4;
  edge.window = 64;
  edge.segment = 32;
  edge.gate = gate->get();  // the bundled gate when installed, else none
  for (const KvPolicyOptions& kv : {full, edge}) {
    SCOPED_TRACE(kv.name);
    const int n_batch = kv.name == "full" ? 128 : 32;
    auto cpu = make_context(host(model), kv, n_batch);
    auto gpu = make_context(*backend, kv, n_batch);
    const std::span<const TokenId> prompt(tokens.data(), 380);
    auto want = cpu->eval(prompt);
    std::vector<float> want_copy(want->begin(), want->end());
    auto got = gpu->eval(prompt);
    ASSERT_TRUE(want.ok() && got.ok());
    EXPECT_LE(max_rel_diff(*got, want_copy), kDeviceLogitsRealModel) << "after prefill";
    for (size_t i = 380; i < tokens.size(); ++i) {
      const std::span<const TokenId> one(tokens.data() + i, 1);
      auto w = cpu->eval(one);
      std::vector<float> wc(w->begin(), w->end());
      auto g = gpu->eval(one);
      EXPECT_LE(max_rel_diff(*g, wc), kDeviceLogitsRealModel) << "decode token " << i;
    }
  }
}

}  // namespace
}  // namespace edgeinf
