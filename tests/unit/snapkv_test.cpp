// SnapKV selection on a synthetic head: the key the observation window attends to survives a
// selection that keeps only the window plus one earlier entry.
#include <gtest/gtest.h>

#include <cmath>

#include "engine/kv/kv_policy.h"
#include "engine/kv/snapkv_policy.h"

namespace edgeinf {
namespace {

TEST(SnapKv, KeepsTheKeyTheWindowAttendsTo) {
  AttentionShape s;
  s.n_layer = 1;
  s.n_head = 1;
  s.n_kv_head = 1;
  s.head_dim = 8;
  s.n_rot = 0;  // no rotation: positions do not matter here
  s.n_ctx_train = 1024;
  KvPolicyOptions o;
  o.name = "snapkv";
  o.obs_window = 2;
  o.pool_kernel = 1;
  o.budget = 5;  // window of 2 + 3 earlier entries
  o.segment = 16;
  auto policy = make_kv_policy(o, s);
  ASSERT_TRUE(policy.ok()) << policy.status();
  KvPolicy& p = **policy;
  kernels::cpu::ThreadPool pool(1);

  // 16 tokens: key j is e_(j % 8) scaled small, except token 5 whose key is 10 * e_0 and whose
  // value is all 7s. The last two queries (the window) point along e_0.
  const int n = 16, d = 8;
  std::vector<float> q(n * d, 0.0f), k(n * d, 0.0f), v(n * d, 0.0f), out(n * d);
  for (int j = 0; j < n; ++j) {
    k[size_t(j * d + (j % d))] = 0.1f;
    for (int c = 0; c < d; ++c) v[size_t(j * d + c)] = float(j);
  }
  k[size_t(5 * d)] = 10.0f;
  for (int c = 0; c < d; ++c) v[size_t(5 * d + c)] = 7.0f;
  for (int t = n - 2; t < n; ++t) q[size_t(t * d)] = 1.0f;
  ASSERT_TRUE(p.begin_batch(n).ok());
  p.attend({0, n, q.data(), k.data(), v.data(), out.data()}, pool);
  p.end_batch(pool);  // 16 + 16 > 5 + 16: selects down to 5 entries
  EXPECT_EQ(p.n_kept(), 5);

  // A query along e_0 now finds token 5 among the survivors.
  std::vector<float> q1(d, 0.0f), k1(d, 0.0f), v1(d, -1.0f), out1(d);
  q1[0] = 3.0f;
  ASSERT_TRUE(p.begin_batch(1).ok());
  p.attend({0, 1, q1.data(), k1.data(), v1.data(), out1.data()}, pool);
  p.end_batch(pool);
  EXPECT_NEAR(out1[0], 7.0f, 0.05f) << "token 5 was evicted";
}

}  // namespace
}  // namespace edgeinf

namespace edgeinf {
namespace {

TEST(PyramidKv, BudgetsFallWithDepthAndAverageTheBudget) {
  for (int n_layer : {2, 3, 7, 30}) {
    for (int budget : {40, 100, 1024}) {
      AttentionShape s;
      s.n_layer = n_layer;
      s.n_head = 2;
      s.n_kv_head = 1;
      s.head_dim = 8;
      s.n_rot = 8;
      s.n_ctx_train = 8192;
      KvPolicyOptions o;
      o.name = "pyramidkv";
      o.budget = budget;
      o.obs_window = 8;
      o.segment = 16;
      auto policy = make_kv_policy(o, s);
      ASSERT_TRUE(policy.ok()) << policy.status();
      const auto* selection = dynamic_cast<const SelectionPolicy*>(policy->get());
      ASSERT_NE(selection, nullptr);
      const std::vector<int64_t>& b = selection->layer_budgets();
      ASSERT_EQ(int(b.size()), n_layer);
      double sum = 0;
      for (size_t il = 0; il < b.size(); ++il) {
        EXPECT_GT(b[il], o.obs_window) << "layer " << il;
        if (il > 0) {
          EXPECT_LE(b[il], b[il - 1]) << "layer " << il;
        }
        sum += double(b[il]);
      }
      EXPECT_NEAR(sum / n_layer, budget, 0.5) << n_layer << " layers, budget " << budget;
      EXPECT_GT(b.front(), b.back()) << "the bottom layer keeps more than the top";
    }
  }
}

}  // namespace
}  // namespace edgeinf
