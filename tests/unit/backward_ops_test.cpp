// The activation gradients of backward_ops.h against central finite differences of the CPU
// kernels' own forward steps (a random direction through every input at once), and RoPE's
// backward against the adjoint identity.
#include "engine/calibration/backward_ops.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>

#include "kernels/cpu/ops.h"

namespace edgeinf {
namespace {

namespace kc = kernels::cpu;

std::vector<float> random_vec(int64_t n, std::mt19937_64& rng, float lo = -1.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = u(rng);
  return v;
}

double dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += double(a[i]) * b[i];
  return s;
}

// sum(dy * f(x + h u)) differentiated along u by central differences, against grad . u.
void expect_directional(const std::function<std::vector<float>(const std::vector<float>&)>& f,
                        const std::vector<float>& x, const std::vector<float>& dy, const std::vector<float>& grad,
                        std::mt19937_64& rng, float h = 1e-3f) {
  const std::vector<float> u = random_vec(int64_t(x.size()), rng);
  std::vector<float> xp = x, xm = x;
  for (size_t i = 0; i < x.size(); ++i) xp[i] += h * u[i], xm[i] -= h * u[i];
  const double fd = (dot(dy, f(xp)) - dot(dy, f(xm))) / (2.0 * h);
  const double an = dot(grad, u);
  EXPECT_NEAR(an, fd, 1e-2 * std::max(1.0, std::abs(fd))) << "analytic " << an << " finite difference " << fd;
}

AttentionShape small_shape() {
  AttentionShape s;
  s.n_layer = 1;
  s.n_head = 6;
  s.n_kv_head = 2;
  s.head_dim = 8;
  s.n_rot = 8;
  s.rope_base = 10000.0f;
  return s;
}

TEST(BackwardOps, MatmulInputGradIsDyTimesW) {
  std::mt19937_64 rng(1);
  const int64_t n = 5, n_in = 70, n_out = 33;  // n_in not a multiple of the column block
  std::vector<float> w = random_vec(n_out * n_in, rng), dy = random_vec(n * n_out, rng);
  const WeightView view{w.data(), kernels::WeightType::kF32, n_in, n_out, n_in * int64_t(sizeof(float))};
  const TransposedWeight t = TransposedWeight::of(view);
  kc::ThreadPool pool(2);
  std::vector<float> dx(static_cast<size_t>(n * n_in), 1.0f);  // accumulates onto what is there
  matmul_input_grad(t, dy.data(), n, dx.data(), pool);
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t i = 0; i < n_in; ++i) {
      double want = 1.0;
      for (int64_t o = 0; o < n_out; ++o) want += double(dy[size_t(r * n_out + o)]) * w[size_t(o * n_in + i)];
      ASSERT_NEAR(dx[size_t(r * n_in + i)], want, 1e-4) << r << ", " << i;
    }
  }
}

TEST(BackwardOps, RmsNorm) {
  std::mt19937_64 rng(2);
  const int64_t n = 4, dim = 24;
  kc::ThreadPool pool(2);
  const std::vector<float> x = random_vec(n * dim, rng), w = random_vec(dim, rng, 0.5f, 1.5f),
                           dy = random_vec(n * dim, rng);
  auto f = [&](const std::vector<float>& in) {
    std::vector<float> out(in.size());
    kc::rmsnorm_forward({in.data(), w.data(), out.data(), n, dim, 1e-5f}, pool);
    return out;
  };
  std::vector<float> dx(x.size(), 0.0f);
  rmsnorm_backward(x.data(), w.data(), dy.data(), n, dim, 1e-5f, dx.data(), pool);
  expect_directional(f, x, dy, dx, rng);
}

TEST(BackwardOps, SwiGlu) {
  std::mt19937_64 rng(3);
  const int64_t n = 40;
  const std::vector<float> g = random_vec(n, rng, -4.0f, 4.0f), u = random_vec(n, rng), dh = random_vec(n, rng);
  std::vector<float> dg(size_t(n), 0.0f), du(size_t(n), 0.0f);
  swiglu_backward(g.data(), u.data(), dh.data(), n, dg.data(), du.data());
  auto silu = [](float v) { return v / (1.0f + std::exp(-v)); };
  auto fg = [&](const std::vector<float>& in) {
    std::vector<float> out(in.size());
    for (size_t i = 0; i < in.size(); ++i) out[i] = silu(in[i]) * u[i];
    return out;
  };
  auto fu = [&](const std::vector<float>& in) {
    std::vector<float> out(in.size());
    for (size_t i = 0; i < in.size(); ++i) out[i] = silu(g[i]) * in[i];
    return out;
  };
  expect_directional(fg, g, dh, dg, rng);
  expect_directional(fu, u, dh, du, rng);
}

TEST(BackwardOps, RopeBackwardIsTheAdjoint) {
  std::mt19937_64 rng(4);
  AttentionShape s = small_shape();
  kc::ThreadPool pool(2);
  for (bool neox : {false, true}) {
    s.rope_neox = neox;
    const int64_t n = 7, width = int64_t(s.n_head) * s.head_dim;
    const std::vector<int32_t> pos = {0, 3, 17, 200, 1023, 4096, 8191};
    std::vector<float> x = random_vec(n * width, rng), dy = random_vec(n * width, rng);
    std::vector<float> rx = x, rdy = dy;
    kernels::RopeParams p{rx.data(), width,       pos.data(), n,       s.n_head, s.head_dim,
                          s.n_rot,   s.rope_base, 1.0f,       nullptr, neox};
    kc::rope_forward(p, pool);
    rope_backward(rdy.data(), pos.data(), n, s.n_head, s, pool);
    EXPECT_NEAR(dot(dy, rx), dot(rdy, x), 1e-4 * std::abs(dot(dy, rx)) + 1e-4) << "neox " << neox;
  }
}

TEST(BackwardOps, AttentionOverConstantAndOwnKeys) {
  std::mt19937_64 rng(5);
  const AttentionShape s = small_shape();
  kc::ThreadPool pool(2);
  const int64_t n = 5, base = 4, n_kv = base + n, q_dim = s.q_dim(), kv_dim = s.kv_dim();
  const std::vector<float> q = random_vec(n * q_dim, rng, -2, 2), k = random_vec(n_kv * kv_dim, rng, -2, 2),
                           v = random_vec(n_kv * kv_dim, rng), dout = random_vec(n * q_dim, rng);
  auto forward = [&](const std::vector<float>& qq, const std::vector<float>& kk, const std::vector<float>& vv) {
    std::vector<float> out(size_t(n * q_dim));
    kernels::AttentionParams p;
    p.q = qq.data();
    p.q_stride = q_dim;
    p.k = kk.data();
    p.v = vv.data();
    p.kv_stride = kv_dim;
    p.kv_head_stride = s.head_dim;
    p.out = out.data();
    p.out_stride = q_dim;
    p.n_tok = n;
    p.n_kv = n_kv;
    p.causal_base = base;
    p.n_head = s.n_head;
    p.n_kv_head = s.n_kv_head;
    p.head_dim = s.head_dim;
    p.scale = 1.0f / std::sqrt(float(s.head_dim));
    kc::attention_forward(p, pool);
    return out;
  };
  const std::vector<float> o = forward(q, k, v);
  std::vector<float> dq(q.size(), 0.0f), dk(size_t(n * kv_dim), 0.0f), dv(size_t(n * kv_dim), 0.0f);
  attention_backward(q.data(), k.data(), v.data(), o.data(), dout.data(), n, n_kv, base, s, dq.data(), dk.data(),
                     dv.data(), pool);
  expect_directional([&](const std::vector<float>& x) { return forward(x, k, v); }, q, dout, dq, rng);
  // Keys and values: only the batch's own rows (from base on) carry a gradient.
  auto own = [&](const std::vector<float>& all) { return std::vector<float>(all.begin() + base * kv_dim, all.end()); };
  auto with_own = [&](const std::vector<float>& all, const std::vector<float>& rows) {
    std::vector<float> out = all;
    std::copy(rows.begin(), rows.end(), out.begin() + base * kv_dim);
    return out;
  };
  expect_directional([&](const std::vector<float>& x) { return forward(q, with_own(k, x), v); }, own(k), dout, dk, rng);
  expect_directional([&](const std::vector<float>& x) { return forward(q, k, with_own(v, x)); }, own(v), dout, dv, rng);
}

TEST(BackwardOps, MemoryRead) {
  std::mt19937_64 rng(6);
  const AttentionShape s = small_shape();
  kc::ThreadPool pool(2);
  const int64_t n = 4, d = s.head_dim, q_dim = s.q_dim();
  const std::vector<float> q = random_vec(n * q_dim, rng, -2, 2), m = random_vec(s.n_kv_head * d * d, rng),
                           z = random_vec(s.n_kv_head * d, rng, 1.0f, 3.0f), da = random_vec(n * q_dim, rng);
  auto forward = [&](const std::vector<float>& qq) {
    std::vector<float> a(size_t(n * q_dim));
    kc::memory_decompress({m.data(), z.data(), qq.data(), q_dim, a.data(), n, s.n_head, s.n_kv_head, s.head_dim}, pool);
    return a;
  };
  const std::vector<float> a = forward(q);
  std::vector<float> dq(q.size(), 0.0f);
  memory_read_backward(q.data(), m.data(), z.data(), a.data(), da.data(), n, s, dq.data(), pool);
  expect_directional(forward, q, da, dq, rng);
}

TEST(BackwardOps, CrossEntropy) {
  std::mt19937_64 rng(7);
  const int64_t n = 3, vocab = 50;
  kc::ThreadPool pool(2);
  const std::vector<float> logits = random_vec(n * vocab, rng, -3, 3);
  const std::vector<int32_t> targets = {7, -1, 49};
  std::vector<float> d(logits.size());
  const double loss = cross_entropy(logits.data(), targets.data(), n, vocab, 0.5f, d.data(), pool);
  double want = 0;
  for (int64_t t : {0, 2}) {
    double sum = 0;
    for (int64_t i = 0; i < vocab; ++i) sum += std::exp(double(logits[size_t(t * vocab + i)]));
    want += std::log(sum) - logits[size_t(t * vocab + targets[size_t(t)])];
  }
  EXPECT_NEAR(loss, want, 1e-9 * want);
  for (int64_t i = 0; i < vocab; ++i) EXPECT_EQ(d[size_t(vocab + i)], 0.0f);  // the unscored row
  auto f = [&](const std::vector<float>& l) {
    std::vector<float> unused(l.size());
    return std::vector<float>{float(cross_entropy(l.data(), targets.data(), n, vocab, 1.0f, unused.data(), pool))};
  };
  expect_directional(f, logits, {0.5f}, d, rng);
}

}  // namespace
}  // namespace edgeinf
