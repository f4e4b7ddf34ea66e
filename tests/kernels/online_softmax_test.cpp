// The online-softmax state (kernels/common/online_softmax.h) against an exact two-pass softmax:
// one pass over all keys, and the same keys split into ranges and merged in any order.
#include "kernels/common/online_softmax.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

namespace edgeinf::kernels {
namespace {

// Exact softmax-weighted sum of value rows, in double.
std::vector<double> exact(const std::vector<float>& scores, const std::vector<float>& v, int d) {
  double mx = -INFINITY;
  for (float s : scores) mx = std::max(mx, double(s));
  double sum = 0;
  std::vector<double> out(size_t(d), 0.0);
  for (size_t j = 0; j < scores.size(); ++j) {
    const double p = std::exp(double(scores[j]) - mx);
    sum += p;
    for (int k = 0; k < d; ++k) out[size_t(k)] += p * v[j * size_t(d) + size_t(k)];
  }
  for (double& o : out) o /= sum;
  return out;
}

struct Part {
  OnlineSoftmax s;
  std::vector<float> acc;
};

Part run(const std::vector<float>& scores, const std::vector<float>& v, int d, size_t begin, size_t end) {
  Part part{OnlineSoftmax{}, std::vector<float>(size_t(d), 0.0f)};
  for (size_t j = begin; j < end; ++j) {
    float p = 0;
    const float f = online_softmax_add(part.s, scores[j], &p);
    for (int k = 0; k < d; ++k) part.acc[size_t(k)] = part.acc[size_t(k)] * f + p * v[j * size_t(d) + size_t(k)];
  }
  return part;
}

void merge(Part& a, const Part& b) {
  float fa = 0, fb = 0;
  online_softmax_merge(a.s, b.s, &fa, &fb);
  for (size_t k = 0; k < a.acc.size(); ++k) a.acc[k] = a.acc[k] * fa + b.acc[k] * fb;
}

TEST(OnlineSoftmax, OnePassAndMergedRangesEqualTheExactSoftmax) {
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const int d = 7;
  for (int n : {1, 2, 5, 64, 333}) {
    std::vector<float> scores(static_cast<size_t>(n)), v(static_cast<size_t>(n * d));
    for (float& s : scores) s = 4.0f * normal(rng);  // wide range: exercises the rescaling
    for (float& x : v) x = normal(rng);
    const std::vector<double> want = exact(scores, v, d);
    const Part one = run(scores, v, d, 0, size_t(n));
    for (int k = 0; k < d; ++k) {
      EXPECT_NEAR(online_softmax_finish(one.s, one.acc[size_t(k)]), want[size_t(k)], 1e-5) << "n " << n;
    }
    // Three ranges (some possibly empty) merged right to left.
    const size_t c1 = size_t(n) / 3, c2 = size_t(n) * 2 / 3;
    Part a = run(scores, v, d, 0, c1), b = run(scores, v, d, c1, c2), c = run(scores, v, d, c2, size_t(n));
    merge(b, c);
    merge(a, b);
    for (int k = 0; k < d; ++k) {
      EXPECT_NEAR(online_softmax_finish(a.s, a.acc[size_t(k)]), want[size_t(k)], 1e-5) << "n " << n;
    }
  }
}

TEST(OnlineSoftmax, EmptyStatesAndMaskedKeys) {
  OnlineSoftmax empty;
  EXPECT_EQ(online_softmax_finish(empty, 1.0f), 0.0f);
  // A masked key (score -inf) contributes nothing, first or later.
  OnlineSoftmax s;
  float p = 1;
  EXPECT_EQ(online_softmax_add(s, -INFINITY, &p), 1.0f);
  EXPECT_EQ(p, 0.0f);
  EXPECT_EQ(s.sum, 0.0f);
  online_softmax_add(s, 0.5f, &p);
  const float f = online_softmax_add(s, -INFINITY, &p);
  EXPECT_EQ(f, 1.0f);
  EXPECT_EQ(p, 0.0f);
  EXPECT_FLOAT_EQ(s.sum, 1.0f);
  // Merging with an empty state on either side keeps the other.
  OnlineSoftmax a = s, none;
  float fa = 0, fb = 0;
  online_softmax_merge(a, none, &fa, &fb);
  EXPECT_EQ(fa, 1.0f);
  EXPECT_EQ(fb, 0.0f);
  online_softmax_merge(none, s, &fa, &fb);
  EXPECT_EQ(none.max, s.max);
  EXPECT_EQ(fa, 0.0f);
  EXPECT_EQ(fb, 1.0f);
}

}  // namespace
}  // namespace edgeinf::kernels
