// The session manager in process, over an in-memory store (conditional commits as the real stores
// make them, reads counted, failures injected) and contexts of the tiny model: etags and versions,
// a session busy with a turn, two replicas racing on one session, idle contexts kept in LRU order
// under hot_bytes, admission of session turns against the memory budget, a session rebuilt from
// its records continuing bit for bit, and a failed commit leaving the stored state as it was.
#include "engine/session/session_manager.h"

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <memory>
#include <mutex>

#include "engine/session/session_meta.h"
#include "tests/cpu_backends.h"
#include "tests/golden/tiny_model.h"
#include "tests/must.h"

namespace edgeinf {
namespace {

using testing::must;

// Records in memory, committed on the same conditions as dir:// and redis:// commit them.
class MemoryStore final : public SessionStore {
 public:
  struct Data {
    std::mutex mu;
    std::map<std::string, std::vector<StoredRecord>> chains;  // latest full record, then deltas
    std::map<std::string, int> reads;                         // full reads per key
    Status fail_commits;                                      // returned by commit() while not OK
  };
  explicit MemoryStore(std::shared_ptr<Data> d) : d_(std::move(d)) {}

  Status commit(const std::string& key, const CommitRequest& req) override {
    std::lock_guard<std::mutex> lock(d_->mu);
    if (!d_->fail_commits.ok()) return d_->fail_commits;
    auto it = d_->chains.find(key);
    const uint64_t stored = it == d_->chains.end() ? 0 : it->second.back().version;
    if (stored + 1 != req.version) return absl::AbortedError("version conflict");
    std::vector<StoredRecord>& chain = d_->chains[key];
    if (req.full) chain.clear();
    chain.push_back(StoredRecord{req.version, std::string(req.record)});
    return absl::OkStatus();
  }
  StatusOr<std::optional<std::vector<StoredRecord>>> read(const std::string& key) override {
    std::lock_guard<std::mutex> lock(d_->mu);
    ++d_->reads[key];
    auto it = d_->chains.find(key);
    if (it == d_->chains.end()) return std::optional<std::vector<StoredRecord>>();
    return std::optional<std::vector<StoredRecord>>(it->second);
  }
  StatusOr<std::optional<StoredRecord>> read_head(const std::string& key) override {
    std::lock_guard<std::mutex> lock(d_->mu);
    auto it = d_->chains.find(key);
    if (it == d_->chains.end()) return std::optional<StoredRecord>();
    return std::optional<StoredRecord>(it->second.back());
  }
  Status remove(const std::string& key) override {
    std::lock_guard<std::mutex> lock(d_->mu);
    d_->chains.erase(key);
    return absl::OkStatus();
  }
  StatusOr<std::vector<std::string>> list(const std::string& prefix) override {
    std::lock_guard<std::mutex> lock(d_->mu);
    std::vector<std::string> out;
    for (const auto& [key, chain] : d_->chains) {
      if (key.starts_with(prefix)) out.push_back(key);
    }
    return out;
  }
  Status ping() override { return absl::OkStatus(); }
  std::string url() const override { return "memory://"; }

 private:
  std::shared_ptr<Data> d_;
};

class SessionManagerTest : public ::testing::Test {
 protected:
  SessionManagerTest() : pool_(2), cpu_(pool_), model_(testing::tiny_model()) {
    kv_.name = "streaming";
    kv_.sink = 4;
    kv_.window = 32;
    kv_.segment = 16;
    bound_ = must(make_kv_policy(kv_, AttentionShape::of(model_)), "policy")->max_state_bytes();
  }

  // A replica over the shared store; budget and hot bytes in units of one context's bound.
  std::unique_ptr<SessionManager> replica(double budget_bounds = 100, double hot_bounds = 100) {
    SessionManagerConfig c;
    c.fixed_bytes = 0;
    c.io_bytes = 0;
    // A context's bound adds one logits row to its policy's.
    const size_t bound = bound_ + size_t(model_.config().n_vocab) * sizeof(float);
    c.memory_budget_bytes = size_t(budget_bounds * double(bound));
    c.hot_bytes = size_t(hot_bounds * double(bound));
    c.busy_wait_ms = 100;
    c.max_deltas = 2;
    ContextMaker m;
    m.make = [this](const KvPolicyOptions& kv) {
      LlamaContextOptions o;
      o.kv = kv;
      o.n_batch = kv.segment;
      return LlamaContext::create(cpu_(model_), o);
    };
    m.make_policy = [this](const KvPolicyOptions& kv) { return make_kv_policy(kv, AttentionShape::of(model_)); };
    m.header = [this](const KvPolicyOptions& kv) { return SnapshotHeader{model_.gguf().fingerprint(), kv, ""}; };
    m.pool = &pool_;
    m.on_room = [this] { ++rooms_; };
    return std::make_unique<SessionManager>(c, std::make_unique<MemoryStore>(data_), std::move(m));
  }

  // Feeds n tokens (seeded) into the leased context and commits them.
  void turn(SessionManager& sm, SessionLease& lease, int n, uint64_t seed) {
    const auto toks = testing::random_tokens(n, model_.config().n_vocab, seed);
    for (size_t i = 0; i < toks.size(); i += 16) {
      const size_t k = std::min<size_t>(16, toks.size() - i);
      must(lease.ctx->eval(std::span<const TokenId>(toks.data() + i, k)), "eval");
    }
    ASSERT_TRUE(sm.commit(lease, TurnCommit{}).ok());
  }
  int reads() {
    std::lock_guard<std::mutex> lock(data_->mu);
    int n = 0;
    for (const auto& [k, r] : data_->reads) n += r;
    return n;
  }

  kernels::cpu::ThreadPool pool_;
  testing::CpuBackends cpu_;
  const LlamaModel& model_;
  KvPolicyOptions kv_;
  size_t bound_ = 0;
  std::shared_ptr<MemoryStore::Data> data_ = std::make_shared<MemoryStore::Data>();
  std::atomic<int> rooms_{0};
};

TEST_F(SessionManagerTest, EtagsFollowTheVersionAndTenantsDoNotSeeEachOther) {
  auto sm = replica();
  const SessionInfo s = must(sm->create("acme", kv_), "create");
  EXPECT_EQ(s.etag, etag_of(1));
  SessionLease lease = must(sm->acquire("acme", s.id, s.etag), "acquire");
  turn(*sm, lease, 40, 1);
  EXPECT_EQ(lease.meta.version, 2u);
  EXPECT_EQ(lease.meta.total, 40);
  sm->release(lease, true);
  // The old etag no longer matches; the new one does.
  EXPECT_EQ(sm->acquire("acme", s.id, etag_of(1)).status().code(), absl::StatusCode::kAborted);
  SessionLease again = must(sm->acquire("acme", s.id, etag_of(2)), "acquire at the new etag");
  EXPECT_EQ(again.ctx->n_past(), 40);
  sm->release(again, true);
  EXPECT_EQ(sm->acquire("other", s.id, "").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(sm->get("other", s.id).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(must(sm->get("acme", s.id), "get").etag, etag_of(2));
}

TEST_F(SessionManagerTest, ASessionHeldByATurnIsBusyUntilReleased) {
  auto sm = replica();
  const SessionInfo s = must(sm->create("acme", kv_), "create");
  SessionLease first = must(sm->acquire("acme", s.id, ""), "acquire");
  const auto t0 = std::chrono::steady_clock::now();
  const Status busy = sm->acquire("acme", s.id, "").status();
  EXPECT_EQ(busy.code(), absl::StatusCode::kAborted) << busy;
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(100));  // waited busy_wait_ms
  EXPECT_EQ(sm->remove("acme", s.id).code(), absl::StatusCode::kAborted);
  sm->release(first, true);
  SessionLease second = must(sm->acquire("acme", s.id, ""), "acquire after release");
  sm->release(second, true);
}

TEST_F(SessionManagerTest, TwoReplicasRacingOnASessionNeverBothCommit) {
  auto a = replica(), b = replica();
  const SessionInfo s = must(a->create("acme", kv_), "create");
  SessionLease la = must(a->acquire("acme", s.id, ""), "a acquires");
  SessionLease lb = must(b->acquire("acme", s.id, ""), "b acquires");
  turn(*a, la, 20, 1);
  must(lb.ctx->eval(testing::random_tokens(5, model_.config().n_vocab, 2)), "b evals");
  EXPECT_EQ(b->commit(lb, TurnCommit{}).code(), absl::StatusCode::kAborted);
  b->release(lb, false);
  a->release(la, true);
  // b reads what a committed.
  SessionLease again = must(b->acquire("acme", s.id, ""), "b acquires again");
  EXPECT_EQ(again.ctx->n_past(), 20);
  EXPECT_EQ(again.meta.version, 2u);
  b->release(again, true);
}

TEST_F(SessionManagerTest, IdleContextsBeyondHotBytesLeaveLeastRecentlyUsedFirst) {
  // Room for two idle contexts (each holds well under a bound after 40 tokens, more than half).
  auto sm = replica(100, 2.0);
  std::vector<SessionInfo> s;
  for (int i = 0; i < 3; ++i) s.push_back(must(sm->create("acme", kv_), "create"));
  for (int i = 0; i < 3; ++i) {
    SessionLease l = must(sm->acquire("acme", s[size_t(i)].id, ""), "acquire");
    turn(*sm, l, 40, uint64_t(i));
    sm->release(l, true);
  }
  EXPECT_EQ(sm->stats().hot_sessions, 2);
  // s1 and s2 are in memory: taking them reads nothing; s0 left first and is read again.
  const int before = reads();
  for (int i : {1, 2}) {
    SessionLease l = must(sm->acquire("acme", s[size_t(i)].id, ""), "acquire hot");
    sm->release(l, true);
  }
  EXPECT_EQ(reads(), before);
  SessionLease l = must(sm->acquire("acme", s[0].id, ""), "acquire cold");
  EXPECT_EQ(reads(), before + 1);
  EXPECT_EQ(l.ctx->n_past(), 40);
  sm->release(l, true);
  // s1 was the least recently used of the two then: it left to make room for s0.
  EXPECT_EQ(sm->stats().hot_sessions, 2);
  SessionLease l1 = must(sm->acquire("acme", s[1].id, ""), "acquire s1");
  EXPECT_EQ(reads(), before + 2);
  sm->release(l1, true);
}

TEST_F(SessionManagerTest, SessionTurnsAreAdmittedOnlyWithinTheMemoryBudget) {
  // Room for one busy context (charged at its bound) and a little more, not two.
  auto sm = replica(1.5, 1.5);
  const SessionInfo a = must(sm->create("acme", kv_), "create a");
  const SessionInfo b = must(sm->create("acme", kv_), "create b");
  SessionLease la = must(sm->acquire("acme", a.id, ""), "acquire a");
  const Status refused = sm->acquire("acme", b.id, "").status();
  EXPECT_TRUE(SessionManager::no_room(refused)) << refused;
  EXPECT_EQ(sm->one_off(kv_).status().code(), absl::StatusCode::kResourceExhausted);
  const int rooms = rooms_;
  turn(*sm, la, 20, 3);
  sm->release(la, true);     // idle now: counted at what it holds, and evictable
  EXPECT_GT(rooms_, rooms);  // waiting turns are told
  SessionLease lb = must(sm->acquire("acme", b.id, ""), "acquire b once a is idle");
  EXPECT_LE(sm->stats().charged_bytes, int64_t(1.5 * double(bound_ + size_t(model_.config().n_vocab) * 4)));
  sm->release(lb, true);
}

TEST_F(SessionManagerTest, ASessionRebuiltFromItsRecordsContinuesBitForBit) {
  auto sm = replica();
  const SessionInfo s = must(sm->create("acme", kv_), "create");
  // Five turns with max_deltas 2: full and delta records, windows that slide.
  for (int i = 0; i < 5; ++i) {
    SessionLease l = must(sm->acquire("acme", s.id, ""), "acquire");
    turn(*sm, l, 23, uint64_t(10 + i));
    sm->release(l, true);
  }
  const SessionManagerStats st = sm->stats();
  EXPECT_GT(st.delta_commits, 0);
  EXPECT_GT(st.full_commits, 0);
  const auto next = testing::random_tokens(3, model_.config().n_vocab, 99);
  SessionLease hot = must(sm->acquire("acme", s.id, ""), "acquire hot");
  const std::vector<float> want = [&] {
    auto logits = must(hot.ctx->eval(next), "eval hot");
    return std::vector<float>(logits.begin(), logits.end());
  }();
  sm->release(hot, false);  // uncommitted: dropped, the store holds the state before it
  auto other = replica();
  SessionLease cold = must(other->acquire("acme", s.id, ""), "acquire from the records");
  EXPECT_EQ(cold.ctx->n_past(), 5 * 23);
  auto got = must(cold.ctx->eval(next), "eval cold");
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(got[i], want[i]) << "logit " << i;
  other->release(cold, true);
}

TEST_F(SessionManagerTest, AFailedCommitLeavesTheStoredStateAsItWas) {
  auto sm = replica();
  const SessionInfo s = must(sm->create("acme", kv_), "create");
  SessionLease l = must(sm->acquire("acme", s.id, ""), "acquire");
  turn(*sm, l, 20, 5);
  sm->release(l, true);
  {
    std::lock_guard<std::mutex> lock(data_->mu);
    data_->fail_commits = absl::UnavailableError("the store is down");
  }
  SessionLease l2 = must(sm->acquire("acme", s.id, ""), "acquire");
  must(l2.ctx->eval(testing::random_tokens(7, model_.config().n_vocab, 6)), "eval");
  EXPECT_EQ(sm->commit(l2, TurnCommit{}).code(), absl::StatusCode::kUnavailable);
  sm->release(l2, false);
  {
    std::lock_guard<std::mutex> lock(data_->mu);
    data_->fail_commits = absl::OkStatus();
  }
  SessionLease l3 = must(sm->acquire("acme", s.id, etag_of(2)), "acquire the stored version");
  EXPECT_EQ(l3.ctx->n_past(), 20);
  sm->release(l3, true);
}

}  // namespace
}  // namespace edgeinf
