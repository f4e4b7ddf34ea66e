// Layer-wise gate fitting: the closed-form quadratic loss of gate_trainer.h, its gradient through
// the sigmoid (and the linear gate), and full-batch Adam with validation-based selection.
#include "engine/calibration/gate_trainer.h"

#include <cmath>

#include "kernels/common/check.h"
#include "kernels/common/linear_memory.h"
#include "kernels/cpu/vec.h"

namespace edgeinf {

void GateSamples::add(double c_t, const float* b_t, const float* gram_t, const float* x_t) {
  c.push_back(c_t);
  b.insert(b.end(), b_t, b_t + n_head);
  gram.insert(gram.end(), gram_t, gram_t + size_t(n_head) * size_t(n_head));
  if (feat_dim > 0) x.insert(x.end(), x_t, x_t + feat_dim);
}

double gate_loss(const GateSamples& s, GateKind kind, const float* bias, const float* weight, float* grad_bias,
                 float* grad_weight, kernels::cpu::ThreadPool& pool) {
  const int64_t n = s.size();
  const int n_head = s.n_head;
  const int64_t f = s.feat_dim;
  const bool linear = kind == GateKind::kLinear;
  EDGEINF_CHECK(!linear || f > 0);
  if (n == 0) return 1.0;
  constexpr int64_t kChunk = 128;
  const int64_t n_chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> loss(size_t(n_chunks), 0.0);
  std::vector<double> gb(grad_bias != nullptr ? size_t(n_chunks * n_head) : 0, 0.0);
  std::vector<float> gw(grad_weight != nullptr && linear ? size_t(n_chunks * n_head * f) : 0, 0.0f);
  pool.run(n_chunks, [&](int64_t chunk) {
    const kernels::cpu::VecOps& vec = kernels::cpu::vec_ops();
    std::vector<float> g(static_cast<size_t>(n_head)), dg(static_cast<size_t>(n_head));
    for (int64_t t = chunk * kChunk; t < std::min(n, (chunk + 1) * kChunk); ++t) {
      const float* x = linear ? s.x.data() + t * f : nullptr;
      const float* b = s.b.data() + t * n_head;
      const float* gram = s.gram.data() + t * n_head * n_head;
      for (int h = 0; h < n_head; ++h) {
        const float logit = bias[h] + (linear ? vec.dot(weight + h * f, x, f) : 0.0f);
        g[size_t(h)] = kernels::sigmoid(logit);
      }
      double l = s.c[size_t(t)];
      for (int h = 0; h < n_head; ++h) {
        double gg = 0;
        for (int k = 0; k < n_head; ++k) gg += double(gram[h * n_head + k]) * g[size_t(k)];
        l += double(g[size_t(h)]) * (2.0 * b[h] + gg);
        // G is symmetric: d/dg_h (g^T G g) = 2 (G g)_h.
        dg[size_t(h)] = float((2.0 * b[h] + 2.0 * gg) * g[size_t(h)] * (1.0 - g[size_t(h)]));
      }
      loss[size_t(chunk)] += l;
      if (!gb.empty()) {
        for (int h = 0; h < n_head; ++h) gb[size_t(chunk * n_head + h)] += dg[size_t(h)];
      }
      if (!gw.empty()) {
        for (int h = 0; h < n_head; ++h) vec.axpy(gw.data() + (chunk * n_head + h) * f, x, dg[size_t(h)], f);
      }
    }
  });
  double c_sum = 0, total = 0;
  for (double c : s.c) c_sum += c;
  for (double l : loss) total += l;
  const double scale = c_sum > 0 ? 1.0 / c_sum : 0.0;
  if (grad_bias != nullptr) {
    for (int h = 0; h < n_head; ++h) {
      double sum = 0;
      for (int64_t ch = 0; ch < n_chunks; ++ch) sum += gb[size_t(ch * n_head + h)];
      grad_bias[h] = float(sum * scale);
    }
  }
  if (grad_weight != nullptr && linear) {
    const int64_t w_size = n_head * f;
    for (int64_t i = 0; i < w_size; ++i) {
      double sum = 0;
      for (int64_t ch = 0; ch < n_chunks; ++ch) sum += gw[size_t(ch * w_size + i)];
      grad_weight[i] = float(sum * scale);
    }
  }
  return c_sum > 0 ? total * scale : 1.0;
}

namespace {

// Adam over one parameter vector.
class Adam {
 public:
  Adam(size_t n, float lr) : lr_(lr), m_(n, 0.0f), v_(n, 0.0f) {}
  void step(std::vector<float>& p, const std::vector<float>& grad, int t) {
    constexpr float kB1 = 0.9f, kB2 = 0.999f, kEps = 1e-8f;
    const float c1 = 1.0f - std::pow(kB1, float(t)), c2 = 1.0f - std::pow(kB2, float(t));
    for (size_t i = 0; i < p.size(); ++i) {
      m_[i] = kB1 * m_[i] + (1 - kB1) * grad[i];
      v_[i] = kB2 * v_[i] + (1 - kB2) * grad[i] * grad[i];
      p[i] -= lr_ * (m_[i] / c1) / (std::sqrt(v_[i] / c2) + kEps);
    }
  }

 private:
  float lr_;
  std::vector<float> m_, v_;
};

}  // namespace

GateFitReport fit_gate_layer(const GateSamples& train, const GateSamples* val, GateKind kind, std::vector<float>& bias,
                             std::vector<float>& weight, const GateFitOptions& o, kernels::cpu::ThreadPool& pool) {
  const int n_head = train.n_head;
  const int64_t f = train.feat_dim;
  GateFitReport rep;
  bias.assign(size_t(n_head), o.init_bias);
  weight.assign(kind == GateKind::kLinear ? size_t(n_head * f) : 0, 0.0f);
  if (train.size() == 0) return rep;
  const bool has_val = val != nullptr && val->size() > 0;
  auto val_loss = [&](GateKind k, const std::vector<float>& b, const std::vector<float>& w) {
    return gate_loss(*val, k, b.data(), w.data(), nullptr, nullptr, pool);
  };

  // Stage 1: one logit per head.
  std::vector<float> grad_b(static_cast<size_t>(n_head)), best_b = bias;
  double best = has_val ? val_loss(GateKind::kScalar, bias, weight) : 0;
  Adam adam_b(size_t(n_head), o.lr);
  for (int step = 1; step <= o.steps; ++step) {
    gate_loss(train, GateKind::kScalar, bias.data(), nullptr, grad_b.data(), nullptr, pool);
    adam_b.step(bias, grad_b, step);
    if (has_val && (step % o.eval_every == 0 || step == o.steps)) {
      const double l = val_loss(GateKind::kScalar, bias, weight);
      if (l < best) best = l, best_b = bias;
    }
  }
  if (has_val) bias = best_b;
  // A closed gate (loss 1) is always available: take it when nothing fitted beats it.
  auto close_if_no_gain = [&](double val) {
    if (!has_val || val < 1.0) return;
    bias.assign(size_t(n_head), kClosedGateBias);
    std::fill(weight.begin(), weight.end(), 0.0f);
  };
  close_if_no_gain(best);
  rep.train_scalar = rep.train = gate_loss(train, GateKind::kScalar, bias.data(), nullptr, nullptr, nullptr, pool);
  rep.val_scalar = rep.val = has_val ? val_loss(GateKind::kScalar, bias, weight) : rep.train;
  if (kind == GateKind::kScalar) return rep;

  // Stage 2: the linear gate from the scalar gate's start (zero weights give the same gate).
  double l1 = 0;
  for (int64_t t = 0; t < train.size(); ++t) {
    for (int64_t i = 0; i < f; ++i) l1 += std::fabs(train.x[size_t(t * f + i)]);
  }
  l1 /= double(train.size());
  std::vector<float> grad_w(weight.size()), best_w = weight;
  best_b = bias;
  best = rep.val;
  if (bias[0] == kClosedGateBias) bias.assign(size_t(n_head), o.init_bias);  // reopen for the linear stage
  Adam adam_b2(size_t(n_head), o.lr), adam_w(weight.size(), l1 > 0 ? float(o.lr / l1) : o.lr);
  for (int step = 1; step <= o.steps; ++step) {
    gate_loss(train, kind, bias.data(), weight.data(), grad_b.data(), grad_w.data(), pool);
    for (size_t i = 0; i < weight.size(); ++i) grad_w[i] += 2.0f * o.weight_decay * weight[i];
    adam_b2.step(bias, grad_b, step);
    adam_w.step(weight, grad_w, step);
    if (has_val && (step % o.eval_every == 0 || step == o.steps)) {
      const double l = val_loss(kind, bias, weight);
      if (l < best) best = l, best_b = bias, best_w = weight;
    }
  }
  if (has_val) bias = best_b, weight = best_w;
  close_if_no_gain(best);
  rep.train = gate_loss(train, kind, bias.data(), weight.data(), nullptr, nullptr, pool);
  rep.val = has_val ? val_loss(kind, bias, weight) : rep.train;
  return rep;
}

}  // namespace edgeinf
