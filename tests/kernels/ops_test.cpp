// CPU model ops against kernels/reference on odd sizes: matmul over every weight type, RMSNorm,
// RoPE (both rotation modes, scaling, per-pair factors), grouped causal attention, SwiGLU.
#include <gtest/gtest.h>

#include <algorithm>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "kernels/cpu/ops.h"
#include "kernels/cpu/vec.h"
#include "kernels/reference/dequantize.h"
#include "kernels/reference/ops.h"
#include "tests/kernels/attention_case.h"
#include "tests/tolerances.h"

namespace edgeinf::kernels {
namespace {

using testing::compare;
using testing::random_floats;

cpu::ThreadPool& pool() {
  static cpu::ThreadPool p(3);  // more threads than cores: exercises the task split
  return p;
}

struct MatmulCase {
  WeightType type;
  int64_t n_in;
};

class MatmulTest : public ::testing::TestWithParam<MatmulCase> {};

TEST_P(MatmulTest, CpuMatchesReference) {
  const auto [type, n_in] = GetParam();
  for (int64_t n_out : {1, 37, 70}) {
    for (int64_t n_tok : {1, 3, 67}) {
      const std::vector<float> wf = random_floats(size_t(n_out * n_in), 3, 0.2f);
      std::vector<uint8_t> w(row_bytes(type, n_in) * size_t(n_out));
      for (int64_t o = 0; o < n_out; ++o) {
        reference::quantize_row(type, wf.data() + o * n_in, w.data() + size_t(o) * row_bytes(type, n_in), n_in);
      }
      const std::vector<float> x = random_floats(size_t(n_tok * n_in), 5);
      const std::vector<float> bias = random_floats(size_t(n_out), 9);
      std::vector<float> want(size_t(n_tok * n_out)), got(size_t(n_tok * n_out));
      MatmulParams p;
      p.w = w.data();
      p.w_type = type;
      p.w_row_bytes = int64_t(row_bytes(type, n_in));
      p.x = x.data();
      p.x_stride = n_in;
      p.y_stride = n_out;
      p.bias = n_out == 37 ? bias.data() : nullptr;
      p.n_tok = n_tok;
      p.n_in = n_in;
      p.n_out = n_out;
      p.y = want.data();
      reference::matmul_forward(p);
      p.y = got.data();
      cpu::matmul_forward(p, pool());
      auto c = compare(got.data(), want.data(), n_tok * n_out, testing::kMatmulTol);
      EXPECT_TRUE(c.ok) << weight_type_traits(uint32_t(type))->name << " n_tok=" << n_tok << " n_out=" << n_out << ": "
                        << c.report;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Types, MatmulTest,
                         ::testing::Values(MatmulCase{WeightType::kF32, 45}, MatmulCase{WeightType::kF16, 61},
                                           MatmulCase{WeightType::kBF16, 24}, MatmulCase{WeightType::kQ4_0, 96},
                                           MatmulCase{WeightType::kQ4_1, 160}, MatmulCase{WeightType::kQ8_0, 32},
                                           MatmulCase{WeightType::kQ4_K, 256}, MatmulCase{WeightType::kQ6_K, 512}),
                         [](const auto& info) {
                           return std::string(weight_type_traits(uint32_t(info.param.type))->name);
                         });

TEST(Ops, RmsNorm) {
  for (int64_t n_embd : {1, 7, 576}) {
    const int64_t n_tok = 5;
    const std::vector<float> x = random_floats(size_t(n_tok * n_embd), 1), w = random_floats(size_t(n_embd), 2);
    std::vector<float> want(x.size()), got(x.size());
    reference::rmsnorm_forward({x.data(), w.data(), want.data(), n_tok, n_embd, 1e-5f});
    cpu::rmsnorm_forward({x.data(), w.data(), got.data(), n_tok, n_embd, 1e-5f}, pool());
    auto c = compare(got.data(), want.data(), int64_t(x.size()), testing::kElementwiseTol);
    EXPECT_TRUE(c.ok) << c.report;
  }
}

TEST(Ops, RopeBothModesWithScalingAndFactors) {
  const int n_head = 3, head_dim = 20, n_tok = 9;
  const std::vector<float> factors = {1.0f, 2.0f, 4.0f, 1.5f, 8.0f, 1.0f, 3.0f, 1.0f};
  for (bool neox : {false, true}) {
    for (int n_rot : {20, 16}) {
      std::vector<float> want = random_floats(size_t(n_tok * n_head * head_dim), 4);
      std::vector<float> got = want;
      std::vector<int32_t> pos(n_tok);
      for (int t = 0; t < n_tok; ++t) pos[size_t(t)] = 1000 * t + 3;
      RopeParams p;
      p.row_stride = n_head * head_dim;
      p.positions = pos.data();
      p.n_tok = n_tok;
      p.n_head = n_head;
      p.head_dim = head_dim;
      p.n_rot = n_rot;
      p.freq_base = 10000.0f;
      p.freq_scale = 0.5f;
      p.freq_factors = n_rot == 16 ? factors.data() : nullptr;
      p.neox = neox;
      p.x = want.data();
      reference::rope_forward(p);
      p.x = got.data();
      cpu::rope_forward(p, pool());
      auto c = compare(got.data(), want.data(), int64_t(got.size()), testing::kElementwiseTol);
      EXPECT_TRUE(c.ok) << "neox=" << neox << " n_rot=" << n_rot << ": " << c.report;
    }
  }
}

TEST(Ops, RopeRotatesTheDocumentedPairs) {
  // One head, position 1, base 1: pair 0 turns by exactly 1 radian.
  std::vector<float> x = {1, 0, 0, 0};
  const int32_t pos = 1;
  RopeParams p;
  p.x = x.data();
  p.row_stride = 4;
  p.positions = &pos;
  p.n_tok = 1;
  p.n_head = 1;
  p.head_dim = 4;
  p.n_rot = 4;
  p.freq_base = 1.0f;
  reference::rope_forward(p);
  EXPECT_NEAR(x[0], std::cos(1.0f), 1e-6);
  EXPECT_NEAR(x[1], std::sin(1.0f), 1e-6);  // normal mode: partner of x[0] is x[1]
  std::vector<float> y = {1, 0, 0, 0};
  p.x = y.data();
  p.neox = true;
  reference::rope_forward(p);
  EXPECT_NEAR(y[0], std::cos(1.0f), 1e-6);
  EXPECT_NEAR(y[2], std::sin(1.0f), 1e-6);  // neox mode: partner of x[0] is x[n_rot/2]
}

TEST(Ops, AttentionGroupedCausal) {
  for (const testing::AttentionCase& c : {testing::AttentionCase{1, 1, 9, 3, 64},
                                          {7, 7, 9, 3, 64},
                                          {5, 23, 4, 4, 16},
                                          {33, 70, 6, 1, 24},
                                          {9, 9, 2, 1, 20},
                                          {17, 40, 3, 3, 100}}) {
    const testing::AttentionInputs in = testing::attention_inputs(c, WeightType::kF32, 1);
    std::vector<float> want(in.q.size()), got(in.q.size());
    AttentionParams p =
        testing::attention_params(c, WeightType::kF32, in.q.data(), in.k.data(), in.v.data(), want.data());
    reference::attention_forward(p);
    p.out = got.data();
    cpu::attention_forward(p, pool());
    auto cmp = compare(got.data(), want.data(), int64_t(got.size()), testing::kAttentionTol);
    EXPECT_TRUE(cmp.ok) << "heads " << c.n_head << "/" << c.n_kv_head << " n_tok " << c.n_tok << " n_kv " << c.n_kv
                        << ": " << cmp.report;
  }
}

// f16 and q8 caches (encoded by the reference's quantisers), token-major with grouped heads and
// head-major, with more keys than one decoded tile, and single blocks of queries over more keys
// than one chunk (merged partial sums): the CPU kernel decodes the same values as the reference,
// so only summation order differs, and the chunks do not depend on the number of threads.
TEST(Ops, AttentionOverEncodedCachesMatchesTheReference) {
  cpu::ThreadPool one_thread(1);
  for (WeightType type : {WeightType::kF16, WeightType::kQ8_0}) {
    for (const testing::AttentionCase& c : {testing::AttentionCase{1, 1, 9, 3, 64},
                                            {1, 150, 9, 3, 64},
                                            {7, 70, 4, 2, 32},
                                            {33, 200, 6, 1, 96},
                                            {16, 129, 4, 2, 64, true},
                                            {1, 64, 2, 1, 32, true},
                                            {1, 2500, 9, 3, 64},
                                            {5, 2049, 4, 2, 32},
                                            {16, 1100, 4, 4, 32, true}}) {
      const testing::AttentionInputs in = testing::attention_inputs(c, type, 1);
      std::vector<float> want(in.q.size()), got(in.q.size()), got_one(in.q.size());
      AttentionParams p = testing::attention_params(c, type, in.q.data(), in.k.data(), in.v.data(), want.data());
      reference::attention_forward(p);
      p.out = got.data();
      cpu::attention_forward(p, pool());
      p.out = got_one.data();
      cpu::attention_forward(p, one_thread);
      auto cmp = compare(got.data(), want.data(), int64_t(got.size()), testing::kAttentionTol);
      const std::string shape = std::to_string(row_bytes(type, 32)) + "-byte blocks, heads " +
                                std::to_string(c.n_head) + "/" + std::to_string(c.n_kv_head) + " n_tok " +
                                std::to_string(c.n_tok) + " n_kv " + std::to_string(c.n_kv) +
                                (c.head_major ? " head-major" : "");
      EXPECT_TRUE(cmp.ok) << shape << ": " << cmp.report;
      EXPECT_EQ(got, got_one) << shape << ": the result depends on the number of threads";
    }
  }
}

TEST(Ops, AttentionFirstTokenSeesOnlyItself) {
  // With one visible key the output is exactly that key's value row.
  const std::vector<float> q = random_floats(8, 1), k = random_floats(16, 2), v = random_floats(16, 3);
  std::vector<float> out(8);
  AttentionParams p;
  p.q = q.data();
  p.q_stride = 8;
  p.k = k.data();
  p.v = v.data();
  p.kv_stride = 8;
  p.kv_head_stride = 8;
  p.out = out.data();
  p.out_stride = 8;
  p.n_tok = 1;
  p.n_kv = 2;
  p.causal_base = 0;
  p.n_head = 1;
  p.n_kv_head = 1;
  p.head_dim = 8;
  cpu::attention_forward(p, pool());
  for (int d = 0; d < 8; ++d) EXPECT_FLOAT_EQ(out[size_t(d)], v[size_t(d)]);
}

TEST(Ops, Swiglu) {
  const int64_t n_ff = 77, n_tok = 3;
  const std::vector<float> g = random_floats(size_t(n_ff * n_tok), 1, 4.0f), u = random_floats(size_t(n_ff * n_tok), 2);
  std::vector<float> want(g.size()), got(g.size());
  reference::swiglu_forward({g.data(), u.data(), want.data(), n_ff, n_tok, n_ff});
  cpu::swiglu_forward({g.data(), u.data(), got.data(), n_ff, n_tok, n_ff}, pool());
  auto c = compare(got.data(), want.data(), int64_t(got.size()), testing::kElementwiseTol);
  EXPECT_TRUE(c.ok) << c.report;
}

TEST(Vec, ExpSumMatchesStdExp) {
  std::vector<float> x = random_floats(203, 5, 20.0f);
  std::vector<double> want(x.size());
  double want_sum = 0;
  for (size_t i = 0; i < x.size(); ++i) want_sum += want[i] = std::exp(double(x[i]) - 3.0);
  const float sum = cpu::vec_ops().exp_sum(x.data(), 3.0f, int64_t(x.size()));
  auto c = compare(x.data(), want.data(), int64_t(x.size()), testing::kExpTol);
  EXPECT_TRUE(c.ok) << c.report;
  EXPECT_NEAR(sum, want_sum, 1e-5 * want_sum);
}

TEST(ThreadPool, RunsEveryTaskExactlyOnce) {
  std::vector<int> hits(1001, 0);
  for (int rep = 0; rep < 50; ++rep) pool().run(int64_t(hits.size()), [&](int64_t t) { ++hits[size_t(t)]; });
  for (size_t i = 0; i < hits.size(); ++i) ASSERT_EQ(hits[i], 50) << "task " << i;
}

TEST(ThreadPool, RunsOnEachThreadOnce) {
  // Per-thread scratch is sized this way: every thread, the caller's included, exactly once.
  for (int n_threads : {1, 2, 5}) {
    cpu::ThreadPool p(n_threads);
    for (int rep = 0; rep < 20; ++rep) {
      std::mutex mu;
      std::vector<std::thread::id> ids;
      p.run_on_each_thread([&] {
        std::lock_guard<std::mutex> lock(mu);
        ids.push_back(std::this_thread::get_id());
      });
      ASSERT_EQ(ids.size(), size_t(n_threads));
      std::sort(ids.begin(), ids.end());
      ASSERT_EQ(std::unique(ids.begin(), ids.end()), ids.end()) << n_threads << " threads, a thread ran twice";
      ASSERT_NE(std::find(ids.begin(), ids.end(), std::this_thread::get_id()), ids.end());
    }
  }
}

}  // namespace
}  // namespace edgeinf::kernels

namespace edgeinf::kernels {
namespace {

TEST(MatmulBatch, EqualsSeparateMatmuls) {
  // Three decode-sized products sharing one input, as Q/K/V do, in one parallel step.
  const int64_t n_in = 64;
  const int64_t n_outs[3] = {45, 16, 16};
  for (int64_t n_tok : {1, 2, 5}) {
    const std::vector<float> x = random_floats(size_t(n_tok * n_in), 21);
    std::vector<std::vector<uint8_t>> w(3);
    std::vector<std::vector<float>> want(3), got(3);
    MatmulParams ps[3];
    for (int i = 0; i < 3; ++i) {
      const std::vector<float> wf = random_floats(size_t(n_outs[i] * n_in), 30 + uint32_t(i), 0.3f);
      w[size_t(i)].resize(row_bytes(WeightType::kQ4_1, n_in) * size_t(n_outs[i]));
      for (int64_t o = 0; o < n_outs[i]; ++o) {
        reference::quantize_row(WeightType::kQ4_1, wf.data() + o * n_in,
                                w[size_t(i)].data() + size_t(o) * row_bytes(WeightType::kQ4_1, n_in), n_in);
      }
      want[size_t(i)].resize(size_t(n_tok * n_outs[i]));
      got[size_t(i)].resize(size_t(n_tok * n_outs[i]));
      MatmulParams& p = ps[i];
      p.w = w[size_t(i)].data();
      p.w_type = WeightType::kQ4_1;
      p.w_row_bytes = int64_t(row_bytes(WeightType::kQ4_1, n_in));
      p.x = x.data();
      p.x_stride = n_in;
      p.y_stride = n_outs[i];
      p.n_tok = n_tok;
      p.n_in = n_in;
      p.n_out = n_outs[i];
      p.y = want[size_t(i)].data();
      reference::matmul_forward(p);
      p.y = got[size_t(i)].data();
    }
    cpu::matmul_forward_batch(ps, pool());
    for (int i = 0; i < 3; ++i) {
      auto c = compare(got[size_t(i)].data(), want[size_t(i)].data(), n_tok * n_outs[i], testing::kMatmulTol);
      EXPECT_TRUE(c.ok) << "matrix " << i << " n_tok " << n_tok << ": " << c.report;
    }
  }
}

}  // namespace
}  // namespace edgeinf::kernels
