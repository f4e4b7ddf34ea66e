// The sink + window cache: eviction order, in-cache positions, and that the keys handed out on
// eviction are the original pre-RoPE keys (un-rotation and the K-shifts compose exactly enough).
#include "engine/kv/sink_window_cache.h"

#include <gtest/gtest.h>

#include <random>

#include "tests/tolerances.h"

namespace edgeinf {
namespace {

AttentionShape tiny_shape() {
  AttentionShape s;
  s.n_layer = 2;
  s.n_head = 2;
  s.n_kv_head = 1;
  s.head_dim = 8;
  s.n_rot = 8;
  s.n_ctx_train = 4096;
  s.rope_base = 10000.0f;
  return s;
}

TEST(SinkWindowCache, EvictsOldestWindowTokensAsPreRopeKeys) {
  const AttentionShape s = tiny_shape();
  const int S = 2, W = 5, L = 3;
  const std::unique_ptr<KvStore> store = make_cpu_kv_store(s, SinkWindowCache::store_shape(S, W, L, true, nullptr));
  SinkWindowCache cache(s, S, W, L, *store);
  kernels::cpu::ThreadPool pool(1);
  std::mt19937 rng(1);
  std::normal_distribution<float> dist;
  std::vector<std::vector<float>> keys, values;  // pre-RoPE, per token
  int64_t next_to_leave = S;                     // tokens leave in order, after the sinks
  for (int step = 0; step < 12; ++step) {
    const int64_t n = 1 + step % L;
    cache.plan(n);
    const int64_t leaving = cache.n_leaving();
    EXPECT_LE(cache.n_cached() - leaving + n, S + W + L);
    std::vector<float> q(size_t(n * s.q_dim())), k(size_t(n * s.kv_dim())), v(size_t(n * s.kv_dim())),
        out(size_t(n * s.q_dim()));
    for (float& x : q) x = dist(rng);
    for (int64_t t = 0; t < n; ++t) {
      std::vector<float> kt(size_t(s.kv_dim())), vt(size_t(s.kv_dim()));
      for (float& x : kt) x = dist(rng);
      for (float& x : vt) x = dist(rng);
      std::copy(kt.begin(), kt.end(), k.begin() + t * s.kv_dim());
      std::copy(vt.begin(), vt.end(), v.begin() + t * s.kv_dim());
      keys.push_back(kt);
      values.push_back(vt);
    }
    for (int layer = 0; layer < s.n_layer; ++layer) {
      cache.evict(layer, true, pool);
      const float* k_out = store->host_leaving_keys();
      const float* v_out = store->host_leaving_values();
      for (int64_t i = 0; i < leaving; ++i) {
        const auto& want_k = keys[size_t(next_to_leave + i)];
        const auto& want_v = values[size_t(next_to_leave + i)];
        auto ck = testing::compare(k_out + i * s.kv_dim(), want_k.data(), s.kv_dim(), testing::kElementwiseTol);
        EXPECT_TRUE(ck.ok) << "step " << step << " token " << next_to_leave + i << ": " << ck.report;
        for (int j = 0; j < s.kv_dim(); ++j) EXPECT_EQ(v_out[i * s.kv_dim() + j], want_v[size_t(j)]);
      }
      std::vector<float> qq = q, kk = k;  // each layer rotates its own copy
      cache.attend({layer, n, qq.data(), kk.data(), v.data(), out.data()}, pool);
    }
    next_to_leave += leaving;
    cache.commit();
    EXPECT_EQ(cache.n_seen(), int64_t(keys.size()));
    EXPECT_EQ(cache.n_left(), next_to_leave - S);
  }
  EXPECT_GT(cache.n_left(), 0);
}

}  // namespace
}  // namespace edgeinf
