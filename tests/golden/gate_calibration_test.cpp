// Gate calibration on a tiny random-weight model (the golden_reference test writes it): sample
// counts, the invariants of each sample, determinism for a seed across thread counts, the
// recorded configuration, and clear errors for unusable settings.
#include "engine/calibration/gate_calibration.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "tests/golden/tiny_model.h"

namespace edgeinf {
namespace {

using testing::tiny_model;
std::vector<TokenId> text_tokens(int n, int n_vocab) { return testing::random_tokens(n, n_vocab, 3); }

CalibrationOptions small_options(GateKind kind) {
  CalibrationOptions o;
  o.gate.kind = kind;
  o.gate.sink = 2;
  o.gate.window = 16;
  o.gate.segment = 8;  // tau = 26
  o.context = 64;
  o.sequences = 3;
  o.validation_sequences = 1;
  o.samples_per_sequence = 16;
  o.fit.steps = 30;
  return o;
}

TEST(GateCalibration, SamplesAreCountedAndConsistent) {
  const LlamaModel& m = tiny_model();
  const std::vector<TokenId> toks = text_tokens(400, m.config().n_vocab);
  kernels::cpu::ThreadPool pool(2);
  auto samples = collect_gate_samples(m, toks, small_options(GateKind::kLinear), pool, nullptr);
  ASSERT_TRUE(samples.ok()) << samples.status();
  const AttentionShape s = AttentionShape::of(m);
  ASSERT_EQ(samples->train.size(), size_t(s.n_layer));
  for (int il = 0; il < s.n_layer; ++il) {
    // Every sampled position is past tau, so every one reads a non-empty memory.
    const GateSamples& t = samples->train[size_t(il)];
    EXPECT_EQ(t.size(), 32) << "layer " << il;
    EXPECT_EQ(samples->val[size_t(il)].size(), 16) << "layer " << il;
    EXPECT_EQ(t.feat_dim, 2 * s.q_dim());
    const int h_n = s.n_head;
    for (int64_t i = 0; i < t.size(); ++i) {
      EXPECT_GT(t.c[size_t(i)], 0.0);
      for (int h = 0; h < h_n; ++h) {
        const float g_hh = t.gram[size_t(i * h_n * h_n + h * h_n + h)];
        EXPECT_GE(g_hh, 0.0f);
        // Cauchy-Schwarz: |u . P_h| <= |u| |P_h|.
        EXPECT_LE(std::fabs(t.b[size_t(i * h_n + h)]), std::sqrt(t.c[size_t(i)] * g_hh) * 1.0001 + 1e-6);
        for (int k = 0; k < h_n; ++k) {
          EXPECT_EQ(t.gram[size_t(i * h_n * h_n + h * h_n + k)], t.gram[size_t(i * h_n * h_n + k * h_n + h)]);
        }
      }
    }
  }
}

TEST(GateCalibration, DeterministicForASeedAndRecordsItsConfiguration) {
  const LlamaModel& m = tiny_model();
  const std::vector<TokenId> toks = text_tokens(400, m.config().n_vocab);
  kernels::cpu::ThreadPool one(1), two(2);
  CalibrationReport rep;
  auto a = calibrate_gate(m, toks, "hash-a", small_options(GateKind::kLinear), one, nullptr, &rep);
  auto b = calibrate_gate(m, toks, "hash-a", small_options(GateKind::kLinear), two, nullptr, nullptr);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  for (int il = 0; il < m.config().n_layer; ++il) {
    EXPECT_EQ((*a)->bias(il), (*b)->bias(il)) << "layer " << il;
    EXPECT_EQ((*a)->weight(il), (*b)->weight(il)) << "layer " << il;
    // The fit keeps the best validation loss seen, the starting gate included.
    EXPECT_LE(rep.layers[size_t(il)].fit.val, rep.layers[size_t(il)].fit.val_scalar);
  }
  const GateConfig& c = (*a)->config();
  EXPECT_EQ(c.sink, 2);
  EXPECT_EQ(c.window, 16);
  EXPECT_EQ(c.segment, 8);
  EXPECT_EQ(c.kind, GateKind::kLinear);
  EXPECT_EQ(c.update, MemoryUpdate::kDelta);
  EXPECT_EQ(c.calibration_hash, "hash-a");
  EXPECT_EQ(c.model_fingerprint, m.gguf().fingerprint());

  // Another seed draws other sequences and tokens.
  CalibrationOptions other = small_options(GateKind::kLinear);
  other.seed = 2;
  auto d = calibrate_gate(m, toks, "hash-a", other, two, nullptr, nullptr);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_NE((*a)->weight(0), (*d)->weight(0));

  // The side file round-trips.
  const std::string path = ::testing::TempDir() + "/calibrated.gate.gguf";
  ASSERT_TRUE((*a)->save(path).ok());
  auto loaded = MemoryGate::load(path, AttentionShape::of(m), m.gguf().fingerprint());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ((*loaded)->bias(1), (*a)->bias(1));
  EXPECT_EQ((*loaded)->weight(1), (*a)->weight(1));
  EXPECT_EQ((*loaded)->config().calibration_hash, "hash-a");
  std::remove(path.c_str());
}

TEST(GateCalibration, RefusesUnusableSettings) {
  const LlamaModel& m = tiny_model();
  const std::vector<TokenId> toks = text_tokens(400, m.config().n_vocab);
  kernels::cpu::ThreadPool pool(1);
  CalibrationOptions o = small_options(GateKind::kScalar);
  o.sequences = 7;  // 7 x 64 > 400 tokens
  auto r = collect_gate_samples(m, toks, o, pool, nullptr);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("calibration text has 400 tokens"), std::string::npos) << r.status();
  o = small_options(GateKind::kScalar);
  o.context = 26;  // no token past tau
  EXPECT_EQ(collect_gate_samples(m, toks, o, pool, nullptr).status().code(), absl::StatusCode::kInvalidArgument);
  o = small_options(GateKind::kScalar);
  o.validation_sequences = 3;
  EXPECT_EQ(collect_gate_samples(m, toks, o, pool, nullptr).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace edgeinf
