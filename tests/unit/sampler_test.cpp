// Sampler chain and stop-string matching: greedy, seeds, each filter's invariant, penalties.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <vector>

#include "engine/sampling/sampler.h"
#include "engine/sampling/stop_matcher.h"

namespace edgeinf {
namespace {

std::vector<float> logits_of(std::vector<float> v) { return v; }

SamplingParams plain(float temp) {
  SamplingParams p;
  p.temperature = temp;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  return p;
}

TEST(Sampler, GreedyPicksArgmaxAndLowestIdOnTies) {
  Sampler s(plain(0.0f), 5);
  EXPECT_EQ(s.sample(logits_of({0.1f, 3.0f, -1.0f, 2.9f, 0.0f})), 1);
  EXPECT_EQ(s.sample(logits_of({1.0f, 3.0f, 3.0f, 0.0f, 0.0f})), 1);
}

TEST(Sampler, SameSeedSameTokensDifferentSeedDiffers) {
  const std::vector<float> l = {1.0f, 1.1f, 0.9f, 1.05f, 0.95f, 1.0f, 1.02f, 0.98f};
  auto draw = [&](uint64_t seed) {
    SamplingParams p = plain(1.0f);
    p.seed = seed;
    Sampler s(p, 8);
    std::vector<int32_t> out;
    for (int i = 0; i < 64; ++i) out.push_back(s.sample(l));
    return out;
  };
  EXPECT_EQ(draw(42), draw(42));
  EXPECT_NE(draw(42), draw(43));
}

TEST(Sampler, TopKKeepsOnlyTheKBest) {
  SamplingParams p = plain(1.0f);
  p.top_k = 2;
  Sampler s(p, 4);
  for (int i = 0; i < 200; ++i) {
    const int32_t t = s.sample(logits_of({0.0f, 5.0f, 4.9f, 4.8f}));
    ASSERT_TRUE(t == 1 || t == 2) << t;
  }
}

TEST(Sampler, TopPKeepsTheSmallestNucleus) {
  SamplingParams p = plain(1.0f);
  p.top_p = 0.5f;  // token 0 alone holds > 50 % of the mass
  Sampler s(p, 3);
  for (int i = 0; i < 200; ++i) ASSERT_EQ(s.sample(logits_of({3.0f, 1.0f, 1.0f})), 0);
}

TEST(Sampler, MinPDropsTokensBelowTheFraction) {
  SamplingParams p = plain(1.0f);
  p.min_p = 0.5f;  // exp(-1) < 0.5 of the top probability, exp(-0.1) is not
  Sampler s(p, 3);
  std::map<int32_t, int> seen;
  for (int i = 0; i < 400; ++i) ++seen[s.sample(logits_of({2.0f, 1.9f, 1.0f}))];
  EXPECT_EQ(seen.count(2), 0u);
  EXPECT_GT(seen[0], 0);
  EXPECT_GT(seen[1], 0);
}

TEST(Sampler, LowTemperatureConcentratesOnTheBest) {
  SamplingParams p = plain(0.01f);
  Sampler s(p, 3);
  for (int i = 0; i < 100; ++i) ASSERT_EQ(s.sample(logits_of({1.0f, 1.2f, 0.8f})), 1);
}

TEST(Sampler, RepetitionPenaltyDemotesRecentTokens) {
  SamplingParams p = plain(0.0f);
  p.repeat_penalty = 2.0f;
  p.repeat_last_n = 2;
  Sampler s(p, 3);
  s.accept(1);
  EXPECT_EQ(s.sample(logits_of({1.0f, 1.5f, 0.5f})), 0);  // 1.5 / 2 < 1.0
  s.accept(0);
  s.accept(2);  // token 1 fell out of the last-2 window
  EXPECT_EQ(s.sample(logits_of({1.0f, 1.5f, 0.5f})), 1);
}

// Draws n tokens and returns each token's frequency.
std::vector<double> frequencies(const SamplingParams& p, const std::vector<float>& logits, int n) {
  Sampler s(p, int(logits.size()));
  std::vector<double> f(logits.size(), 0.0);
  for (int i = 0; i < n; ++i) f[size_t(s.sample(logits))] += 1.0 / n;
  return f;
}

// softmax(logits / temperature) over the kept tokens, zero elsewhere.
std::vector<double> filtered(const std::vector<float>& logits, const std::vector<int>& kept, double temperature) {
  std::vector<double> p(logits.size(), 0.0);
  double sum = 0;
  for (int i : kept) sum += p[size_t(i)] = std::exp(double(logits[size_t(i)]) / temperature);
  for (double& x : p) x /= sum;
  return p;
}

TEST(Sampler, DrawsFollowTheFilteredDistribution) {
  // 20,000 draws per case; every frequency within 5 standard deviations of its probability (a
  // greedy sampler, a filter that keeps the wrong set or a temperature applied twice fail).
  const std::vector<float> l = {0.0f, 2.0f, 1.6f, 1.3f, 1.2f, -0.5f};
  struct Case {
    const char* name;
    SamplingParams p;
    std::vector<int> kept;
  };
  std::vector<Case> cases;
  cases.push_back({"plain t=1", plain(1.0f), {0, 1, 2, 3, 4, 5}});
  cases.push_back({"plain t=0.7", plain(0.7f), {0, 1, 2, 3, 4, 5}});
  SamplingParams k = plain(1.0f);
  k.top_k = 2;
  cases.push_back({"top-k 2", k, {1, 2}});
  SamplingParams tp = plain(1.0f);
  tp.top_p = 0.6f;  // p(1)=0.33, p(2)=0.22, p(3)=0.16: the nucleus reaching 0.6 is {1, 2, 3}
  cases.push_back({"top-p 0.6", tp, {1, 2, 3}});
  SamplingParams mp = plain(1.5f);
  mp.min_p = 0.5f;  // exp(-0.4) >= 0.5 > exp(-0.7): keeps {1, 2}; then temperature 1.5
  cases.push_back({"min-p 0.5 t=1.5", mp, {1, 2}});
  const int n = 20000;
  for (Case& c : cases) {
    c.p.seed = 17;
    const std::vector<double> got = frequencies(c.p, l, n);
    const std::vector<double> want = filtered(l, c.kept, c.p.temperature);
    for (size_t i = 0; i < l.size(); ++i) {
      const double sigma = std::sqrt(want[i] * (1 - want[i]) / n);
      EXPECT_NEAR(got[i], want[i], 5 * sigma + 1e-9) << c.name << ", token " << i;
    }
  }
}

TEST(Sampler, ValidateRejectsOutOfRange) {
  SamplingParams p;
  EXPECT_TRUE(validate(p).ok());
  p.top_p = 0.0f;
  EXPECT_EQ(validate(p).code(), absl::StatusCode::kInvalidArgument);
  p = SamplingParams();
  p.temperature = -1.0f;
  EXPECT_FALSE(validate(p).ok());
  p = SamplingParams();
  p.min_p = 1.5f;
  EXPECT_FALSE(validate(p).ok());
  p = SamplingParams();
  p.repeat_penalty = 0.0f;
  EXPECT_FALSE(validate(p).ok());
}

TEST(StopMatcher, HoldsBackPrefixesAndCutsAtTheMatch) {
  StopMatcher m({"</end>", "STOP"});
  EXPECT_EQ(m.push("hello </"), "hello ");
  EXPECT_EQ(m.push("en"), "");
  EXPECT_EQ(m.push("x"), "</enx");  // not a stop string after all
  EXPECT_EQ(m.push(" ST"), " ");
  EXPECT_EQ(m.push("OP and more"), "");
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(m.push("ignored"), "");
}

TEST(StopMatcher, MatchInsideOnePieceAndFlush) {
  StopMatcher m({"ab"});
  EXPECT_EQ(m.push("xxabyy"), "xx");
  EXPECT_TRUE(m.stopped());
  StopMatcher n({"ab"});
  EXPECT_EQ(n.push("xa"), "x");
  EXPECT_EQ(n.flush(), "a");
  EXPECT_FALSE(n.stopped());
  StopMatcher none({});
  EXPECT_EQ(none.push("abc"), "abc");
}

}  // namespace
}  // namespace edgeinf
