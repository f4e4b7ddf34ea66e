// The small attention shape the snapshot fuzzer restores into, and states of every KV policy on it
// (for the fuzzer's base states and the seed corpus): tokens of random Q/K/V through the policy.
#pragma once

#include <random>
#include <string>
#include <vector>

#include "engine/kv/kv_policy.h"
#include "engine/session/snapshot.h"

namespace edgeinf::fuzz {

inline AttentionShape shape() {
  AttentionShape s;
  s.n_layer = 2;
  s.n_head = 2;
  s.n_kv_head = 1;
  s.head_dim = 8;
  s.n_rot = 8;
  s.n_ctx_train = 256;
  return s;
}

inline KvPolicyOptions options(const std::string& name) {
  KvPolicyOptions o;
  o.name = name;
  o.n_ctx = 64;
  o.sink = 2;
  o.window = 8;
  o.segment = 4;
  o.budget = 12;
  o.obs_window = 2;
  o.pool_kernel = 3;
  return o;
}

inline int policy_index(const std::string& name) {
  const std::vector<std::string> names = kv_policy_names();
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i] == name) return int(i);
  }
  return 0;
}

// Feeds n tokens of random Q/K/V (seeded) through the policy in batches of its segment.
inline void feed(KvPolicy& p, int n, uint32_t seed) {
  const AttentionShape s = shape();
  kernels::cpu::ThreadPool pool(1);
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  for (int done = 0; done < n;) {
    const int64_t b = std::min<int64_t>(p.max_batch(), n - done);
    std::vector<float> q(size_t(b * s.q_dim())), k(size_t(b * s.kv_dim())), v(k.size()), out(q.size());
    if (!p.begin_batch(b).ok()) return;
    for (int il = 0; il < s.n_layer; ++il) {
      for (float& x : q) x = d(rng);
      for (float& x : k) x = d(rng);
      for (float& x : v) x = d(rng);
      p.attend({il, b, q.data(), k.data(), v.data(), out.data()}, pool);
    }
    p.end_batch(pool);
    done += int(b);
  }
}

struct SnapshotSeed {
  std::string full;   // a full snapshot after 11 tokens
  std::string delta;  // a delta record of 7 more (empty when the policy has none)
};

inline SnapshotHeader header(const std::string& name) { return SnapshotHeader{"fuzz", options(name), ""}; }

inline SnapshotSeed make_snapshot_seed(const std::string& name) {
  SnapshotSeed seed;
  auto p = make_kv_policy(options(name), shape());
  if (!p.ok()) return seed;
  feed(**p, 11, 1);
  auto full = write_snapshot(header(name), "meta", **p);
  if (full.ok()) seed.full = *full;
  (*p)->mark_saved();
  feed(**p, 7, 2);
  if (auto delta = write_snapshot_delta(header(name), "meta", **p)) seed.delta = *delta;
  return seed;
}

}  // namespace edgeinf::fuzz
