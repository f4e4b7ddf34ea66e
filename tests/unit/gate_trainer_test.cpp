// The gate trainer: its loss against a direct computation, its gradient against finite differences,
// recovery of a known optimal gate (scalar and linear), and determinism across thread counts.
#include "engine/calibration/gate_trainer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "kernels/common/linear_memory.h"

namespace edgeinf {
namespace {

struct Synthetic {
  int n_head = 3;
  int64_t width = 10;  // residual width
  int64_t feat = 8;    // gate input width
  // Per sample: u [width], P [n_head, width], x [feat].
  std::vector<std::vector<float>> u, p, x;
};

// Random samples; when `target` is given, u = -sum_h g*_h P_h with g* = target(x, h), so that gate
// has zero loss.
Synthetic make_synthetic(int n, uint64_t seed, const std::function<float(const float* x, int h)>& target = nullptr) {
  Synthetic s;
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int t = 0; t < n; ++t) {
    std::vector<float> u(size_t(s.width)), p(size_t(s.n_head * s.width)), x(size_t(s.feat));
    for (float& v : p) v = normal(rng);
    for (float& v : x) v = normal(rng);
    if (target) {
      for (int h = 0; h < s.n_head; ++h) {
        const float g = target(x.data(), h);
        for (int64_t j = 0; j < s.width; ++j) u[size_t(j)] -= g * p[size_t(h * s.width + j)];
      }
    } else {
      for (float& v : u) v = normal(rng);
    }
    s.u.push_back(u);
    s.p.push_back(p);
    s.x.push_back(x);
  }
  return s;
}

GateSamples to_samples(const Synthetic& s) {
  GateSamples out(s.n_head, s.feat);
  for (size_t t = 0; t < s.u.size(); ++t) {
    const std::vector<float>& u = s.u[t];
    const std::vector<float>& p = s.p[t];
    double c = 0;
    for (float v : u) c += double(v) * v;
    std::vector<float> b(size_t(s.n_head)), gram(size_t(s.n_head * s.n_head));
    for (int h = 0; h < s.n_head; ++h) {
      for (int64_t j = 0; j < s.width; ++j) b[size_t(h)] += u[size_t(j)] * p[size_t(h * s.width + j)];
      for (int k = 0; k < s.n_head; ++k) {
        for (int64_t j = 0; j < s.width; ++j) {
          gram[size_t(h * s.n_head + k)] += p[size_t(h * s.width + j)] * p[size_t(k * s.width + j)];
        }
      }
    }
    out.add(c, b.data(), gram.data(), s.x[t].data());
  }
  return out;
}

// sum_t |u_t + sum_h g_th P_th|^2 / sum_t |u_t|^2, straight from the definition.
double direct_loss(const Synthetic& s, GateKind kind, const std::vector<float>& bias,
                   const std::vector<float>& weight) {
  double num = 0, den = 0;
  for (size_t t = 0; t < s.u.size(); ++t) {
    std::vector<double> r(s.u[t].begin(), s.u[t].end());
    for (int h = 0; h < s.n_head; ++h) {
      double logit = bias[size_t(h)];
      if (kind == GateKind::kLinear) {
        for (int64_t i = 0; i < s.feat; ++i) logit += double(weight[size_t(h * s.feat + i)]) * s.x[t][size_t(i)];
      }
      const double g = 1.0 / (1.0 + std::exp(-logit));
      for (int64_t j = 0; j < s.width; ++j) r[size_t(j)] += g * s.p[t][size_t(h * s.width + j)];
    }
    for (int64_t j = 0; j < s.width; ++j)
      num += r[size_t(j)] * r[size_t(j)], den += double(s.u[t][size_t(j)]) * s.u[t][size_t(j)];
  }
  return num / den;
}

TEST(GateTrainer, LossMatchesTheDefinition) {
  const Synthetic s = make_synthetic(300, 1);
  const GateSamples samples = to_samples(s);
  kernels::cpu::ThreadPool pool(2);
  std::vector<float> bias = {-1.0f, 0.3f, 2.0f}, weight(size_t(s.n_head * s.feat));
  for (size_t i = 0; i < weight.size(); ++i) weight[i] = 0.05f * float(int(i % 7) - 3);
  for (GateKind kind : {GateKind::kScalar, GateKind::kLinear}) {
    const double got = gate_loss(samples, kind, bias.data(), weight.data(), nullptr, nullptr, pool);
    EXPECT_NEAR(got, direct_loss(s, kind, bias, weight), 1e-5 * got);
  }
  // A closed gate is the baseline.
  std::vector<float> closed(3, -INFINITY);
  EXPECT_NEAR(gate_loss(samples, GateKind::kScalar, closed.data(), nullptr, nullptr, nullptr, pool), 1.0, 1e-9);
}

TEST(GateTrainer, GradientMatchesFiniteDifferences) {
  const Synthetic s = make_synthetic(200, 2);
  const GateSamples samples = to_samples(s);
  kernels::cpu::ThreadPool pool(2);
  std::vector<float> bias = {-0.5f, 0.2f, 1.0f}, weight(size_t(s.n_head * s.feat));
  for (size_t i = 0; i < weight.size(); ++i) weight[i] = 0.03f * float(int(i % 5) - 2);
  for (GateKind kind : {GateKind::kScalar, GateKind::kLinear}) {
    std::vector<float> gb(3), gw(weight.size());
    gate_loss(samples, kind, bias.data(), weight.data(), gb.data(), gw.data(), pool);
    auto check = [&](std::vector<float>& param, const std::vector<float>& grad, const char* what) {
      for (size_t i = 0; i < param.size(); ++i) {
        const float keep = param[i];
        const double h = 1e-2;  // the direct loss is float64, so a wide central step is exact to O(h^2)
        param[i] = float(keep + h);
        const double up = direct_loss(s, kind, bias, weight);
        param[i] = float(keep - h);
        const double down = direct_loss(s, kind, bias, weight);
        param[i] = keep;
        const double fd = (up - down) / (2 * h);
        EXPECT_NEAR(grad[i], fd, 2e-3 * std::max(1.0, std::fabs(fd))) << what << "[" << i << "]";
      }
    };
    check(bias, gb, "bias");
    if (kind == GateKind::kLinear) check(weight, gw, "weight");
  }
}

TEST(GateTrainer, RecoversAKnownScalarGate) {
  const float want[3] = {0.1f, 0.5f, 0.8f};
  const Synthetic s = make_synthetic(400, 3, [&](const float*, int h) { return want[h]; });
  const Synthetic v = make_synthetic(100, 4, [&](const float*, int h) { return want[h]; });
  const GateSamples train = to_samples(s), val = to_samples(v);
  kernels::cpu::ThreadPool pool(2);
  std::vector<float> bias, weight;
  GateFitOptions o;
  o.steps = 400;
  const GateFitReport rep = fit_gate_layer(train, &val, GateKind::kScalar, bias, weight, o, pool);
  for (int h = 0; h < 3; ++h) EXPECT_NEAR(kernels::sigmoid(bias[size_t(h)]), want[h], 0.01) << "head " << h;
  EXPECT_LT(rep.val, 1e-3);
  EXPECT_TRUE(weight.empty());
}

TEST(GateTrainer, RecoversAKnownLinearGate) {
  // g*(x, h) = sigmoid(w*_h . x + b*_h): a gate that depends on the token, which no scalar gate fits.
  const std::vector<float> w_star = {0.8f, -0.4f, 0, 0,     0.3f, 0, 0,    0,    0, 0, 0, 0,
                                     0,    0.9f,  0, -0.6f, 0,    0, 0.5f, 0.5f, 0, 0, 0, 0};
  const float b_star[3] = {-1.0f, 0.5f, 0.0f};
  auto target = [&](const float* x, int h) {
    float l = b_star[h];
    for (int i = 0; i < 8; ++i) l += w_star[size_t(h * 8 + i)] * x[i];
    return kernels::sigmoid(l);
  };
  const Synthetic s = make_synthetic(1500, 5, target), v = make_synthetic(300, 6, target);
  const GateSamples train = to_samples(s), val = to_samples(v);
  kernels::cpu::ThreadPool pool(2);
  std::vector<float> bias, weight;
  GateFitOptions o;
  o.steps = 600;
  o.weight_decay = 0;
  const GateFitReport rep = fit_gate_layer(train, &val, GateKind::kLinear, bias, weight, o, pool);
  EXPECT_GT(rep.val_scalar, 0.05) << "a scalar gate cannot fit a token-dependent target";
  EXPECT_LT(rep.val, 0.1 * rep.val_scalar);
  for (size_t i = 0; i < w_star.size(); ++i) EXPECT_NEAR(weight[i], w_star[i], 0.1) << "weight " << i;
  for (int h = 0; h < 3; ++h) EXPECT_NEAR(bias[size_t(h)], b_star[h], 0.15) << "bias " << h;
}

TEST(GateTrainer, ClosesTheGateWhenTheMemoryOnlyHurts) {
  // The best gate would be negative: every open gate is worse than none.
  auto target = [](const float*, int) { return -0.5f; };
  const GateSamples train = to_samples(make_synthetic(300, 9, target)),
                    val = to_samples(make_synthetic(100, 10, target));
  kernels::cpu::ThreadPool pool(2);
  for (GateKind kind : {GateKind::kScalar, GateKind::kLinear}) {
    std::vector<float> bias, weight;
    const GateFitReport rep = fit_gate_layer(train, &val, kind, bias, weight, GateFitOptions(), pool);
    EXPECT_EQ(bias, std::vector<float>(3, kClosedGateBias));
    EXPECT_NEAR(rep.val, 1.0, 1e-9);
    for (float w : weight) EXPECT_EQ(w, 0.0f);
  }
}

TEST(GateTrainer, DeterministicAcrossThreadCounts) {
  const Synthetic s = make_synthetic(700, 7), v = make_synthetic(100, 8);
  const GateSamples train = to_samples(s), val = to_samples(v);
  GateFitOptions o;
  o.steps = 40;
  std::vector<float> b1, w1, b2, w2;
  kernels::cpu::ThreadPool one(1), two(2);
  fit_gate_layer(train, &val, GateKind::kLinear, b1, w1, o, one);
  fit_gate_layer(train, &val, GateKind::kLinear, b2, w2, o, two);
  EXPECT_EQ(b1, b2);
  EXPECT_EQ(w1, w2);
}

TEST(GateTrainer, EmptySamplesLeaveTheStartingGate) {
  GateSamples empty(3, 8);
  kernels::cpu::ThreadPool pool(1);
  std::vector<float> bias, weight;
  GateFitOptions o;
  const GateFitReport rep = fit_gate_layer(empty, nullptr, GateKind::kLinear, bias, weight, o, pool);
  EXPECT_EQ(bias, std::vector<float>(3, o.init_bias));
  EXPECT_EQ(weight, std::vector<float>(24, 0.0f));
  EXPECT_EQ(rep.val, 1.0);
}

}  // namespace
}  // namespace edgeinf
