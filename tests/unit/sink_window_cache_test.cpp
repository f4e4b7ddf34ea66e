// The sink + window cache: eviction order, in-cache positions, and that the keys handed out on
// eviction are the original pre-RoPE keys (un-rotation and the K-shifts compose exactly enough),
// also when the cache stores f16 or q8 keys that are decoded, re-rotated and encoded again at
// every shift.
#include "engine/kv/sink_window_cache.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>

#include "kernels/common/kv_rows.h"
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

// A batch of n tokens' random queries, keys and values (pre-RoPE) and room for its output; each
// token's key and value are also appended to keys and values.
struct Batch {
  std::vector<float> q, k, v, out;
};
Batch random_batch(const AttentionShape& s, int64_t n, std::mt19937& rng, std::vector<std::vector<float>>& keys,
                   std::vector<std::vector<float>>& values) {
  std::normal_distribution<float> dist;
  Batch b{std::vector<float>(size_t(n * s.q_dim())), std::vector<float>(size_t(n * s.kv_dim())),
          std::vector<float>(size_t(n * s.kv_dim())), std::vector<float>(size_t(n * s.q_dim()))};
  for (float& x : b.q) x = dist(rng);
  for (int64_t t = 0; t < n; ++t) {
    std::vector<float> kt(size_t(s.kv_dim())), vt(size_t(s.kv_dim()));
    for (float& x : kt) x = dist(rng);
    for (float& x : vt) x = dist(rng);
    std::copy(kt.begin(), kt.end(), b.k.begin() + t * s.kv_dim());
    std::copy(vt.begin(), vt.end(), b.v.begin() + t * s.kv_dim());
    keys.push_back(std::move(kt));
    values.push_back(std::move(vt));
  }
  return b;
}

TEST(SinkWindowCache, EvictsOldestWindowTokensAsPreRopeKeys) {
  const AttentionShape s = tiny_shape();
  const int S = 2, W = 5, L = 3;
  const std::unique_ptr<KvStore> store =
      make_cpu_kv_store(s, SinkWindowCache::store_shape(S, W, L, true, nullptr, KvType::kF32));
  SinkWindowCache cache(s, S, W, L, *store);
  kernels::cpu::ThreadPool pool(1);
  std::mt19937 rng(1);
  std::vector<std::vector<float>> keys, values;  // pre-RoPE, per token
  int64_t next_to_leave = S;                     // tokens leave in order, after the sinks
  for (int step = 0; step < 12; ++step) {
    const int64_t n = 1 + step % L;
    cache.plan(n);
    const int64_t leaving = cache.n_leaving();
    EXPECT_LE(cache.n_cached() - leaving + n, S + W + L);
    Batch b = random_batch(s, n, rng, keys, values);
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
      std::vector<float> qq = b.q, kk = b.k;  // each layer rotates its own copy
      cache.attend({layer, n, qq.data(), kk.data(), b.v.data(), b.out.data()}, pool);
    }
    next_to_leave += leaving;
    cache.commit();
    EXPECT_EQ(cache.n_seen(), int64_t(keys.size()));
    EXPECT_EQ(cache.n_left(), next_to_leave - S);
  }
  EXPECT_GT(cache.n_left(), 0);
}

// Encoded keys are re-encoded after every shift, so their error grows with the shifts a key
// lives through ((W + L) / L - 1 of them, here 6). Measured: the RMS error of a leaving key
// against the original, relative to encoding it once, per type; it must grow no faster than
// independent errors would (about the square root of the encodings), and values (never
// re-encoded) must equal a single encoding exactly.
TEST(SinkWindowCache, EncodedKeysDriftLittleThroughTheirShifts) {
  AttentionShape s = tiny_shape();
  s.n_kv_head = 2;
  s.n_head = 4;
  s.head_dim = s.n_rot = 64;
  const int S = 2, W = 48, L = 8;
  kernels::cpu::ThreadPool pool(2);
  for (KvType type : {KvType::kF16, KvType::kQ8_0}) {
    for (bool neox : {false, true}) {
      s.rope_neox = neox;
      const std::unique_ptr<KvStore> store =
          make_cpu_kv_store(s, SinkWindowCache::store_shape(S, W, L, true, nullptr, type));
      SinkWindowCache cache(s, S, W, L, *store);
      std::mt19937 rng(7);
      std::vector<std::vector<float>> keys, values;
      int64_t next_to_leave = S;
      double err2 = 0, once2 = 0;
      int64_t n_checked = 0;
      std::vector<uint8_t> enc(kernels::kv_value_offset(type, s.kv_dim()));
      std::vector<float> dec(size_t(s.kv_dim()));
      auto encode_once = [&](const std::vector<float>& x) {
        kernels::encode_kv_values(type, x.data(), enc.data(), s.kv_dim());
        for (int64_t j = 0; j < s.kv_dim(); ++j) {
          dec[size_t(j)] = type == KvType::kF16 ? kernels::kv_value<KvType::kF16>(enc.data(), j)
                                                : kernels::kv_value<KvType::kQ8_0>(enc.data(), j);
        }
        return dec;
      };
      for (int step = 0; step < 60; ++step) {
        const int64_t n = L;
        cache.plan(n);
        const int64_t leaving = cache.n_leaving();
        Batch b = random_batch(s, n, rng, keys, values);
        cache.evict(0, true, pool);
        for (int64_t i = 0; i < leaving; ++i) {
          const std::vector<float>& want_k = keys[size_t(next_to_leave + i)];
          const float* got_k = store->host_leaving_keys() + i * s.kv_dim();
          const std::vector<float> once = encode_once(want_k);
          for (int64_t j = 0; j < s.kv_dim(); ++j) {
            err2 += std::pow(double(got_k[j]) - want_k[size_t(j)], 2);
            once2 += std::pow(double(once[size_t(j)]) - want_k[size_t(j)], 2);
          }
          const std::vector<float> once_v = encode_once(values[size_t(next_to_leave + i)]);
          for (int64_t j = 0; j < s.kv_dim(); ++j) {
            ASSERT_EQ(store->host_leaving_values()[i * s.kv_dim() + j], once_v[size_t(j)]);
          }
          ++n_checked;
        }
        for (int layer = 0; layer < s.n_layer; ++layer) {
          if (layer > 0) cache.evict(layer, false, pool);
          std::vector<float> qq = b.q, kk = b.k;
          cache.attend({layer, n, qq.data(), kk.data(), b.v.data(), b.out.data()}, pool);
        }
        next_to_leave += leaving;
        cache.commit();
      }
      ASSERT_GT(n_checked, 100);
      const double ratio = std::sqrt(err2 / once2);
      std::printf("%s keys, %s rotation: RMS error after %d shifts = %.2f x one encoding's (%.3g)\n",
                  kv_type_name(type), neox ? "neox" : "normal", W / L, ratio,
                  std::sqrt(once2 / double(n_checked * s.kv_dim())));
      EXPECT_LT(ratio, testing::kEncodedKeyDrift) << kv_type_name(type);
    }
  }
}

}  // namespace
}  // namespace edgeinf
