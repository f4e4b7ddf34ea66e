// KV policy state round trips: a context saved after N tokens and restored into a fresh context
// continues bit-identically to the original, for every policy and KV type (f32 and f16 on a model
// with 48-value heads, q8 on one with 32-value heads); truncated bytes and bytes from another shape
// are refused with clear errors and leave the policy empty; a snapshot of format version 1 loads.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <iterator>

#include "absl/strings/str_cat.h"

#include "engine/kv/memory_gate.h"
#include "engine/runtime/llama_context.h"
#include "engine/session/snapshot.h"
#include "tests/cpu_backends.h"
#include "tests/golden/tiny_model.h"
#include "tests/must.h"
#include "tests/test_paths.h"

namespace edgeinf {
namespace {

using testing::random_tokens;
using testing::tiny_model;
constexpr auto& tokens = random_tokens;

// The tiny model a KV type runs on: q8 blocks of 32 values need heads of a multiple of 32.
const LlamaModel& model_for(KvType type) {
  if (type != KvType::kQ8_0) return tiny_model();
  static const LlamaModel* m =
      testing::must(LlamaModel::load(testing::golden_dir() + "/tiny_q8_0.gguf"), "the tiny q8_0 model").release();
  return *m;
}

std::unique_ptr<LlamaContext> make_context(const KvPolicyOptions& kv, testing::CpuBackends& cpu) {
  LlamaContextOptions o;
  o.kv = kv;
  o.n_batch = 16;
  return testing::must(LlamaContext::create(cpu(model_for(kv.kv_type)), o), "LlamaContext::create");
}

std::vector<float> feed(LlamaContext& c, const std::vector<TokenId>& toks) {
  std::vector<float> out;
  for (size_t b = 0; b < toks.size(); b += size_t(c.n_batch())) {
    const size_t n = std::min(size_t(c.n_batch()), toks.size() - b);
    const auto l = testing::must(c.eval_all_logits(std::span<const TokenId>(toks.data() + b, n)), "eval");
    out.insert(out.end(), l.begin(), l.end());
  }
  return out;
}

std::vector<KvPolicyOptions> all_policies(const MemoryGate* gate, KvType type = KvType::kF32) {
  std::vector<KvPolicyOptions> out;
  for (const char* name : {"full", "streaming", "edgeinfinite", "snapkv", "pyramidkv"}) {
    KvPolicyOptions o;
    o.name = name;
    o.kv_type = type;
    o.n_ctx = 256;
    o.sink = 2;
    o.window = 24;
    o.segment = 16;
    o.budget = 40;
    o.obs_window = 4;
    o.pool_kernel = 3;
    o.gate = std::string(name) == "edgeinfinite" ? gate : nullptr;
    out.push_back(o);
  }
  return out;
}

// The bytes of a policy's whole state.
std::string state_of(const KvPolicy& p) {
  std::string bytes;
  ByteWriter w(&bytes);
  EXPECT_TRUE(p.save(w).ok());
  return bytes;
}

constexpr KvType kAllTypes[] = {KvType::kF32, KvType::kF16, KvType::kQ8_0};

TEST(KvSnapshot, RestoredContextContinuesBitIdentically) {
  kernels::cpu::ThreadPool pool(2);
  testing::CpuBackends cpu(pool);
  for (KvType type : kAllTypes) {
    const LlamaModel& m = model_for(type);
    const int n_vocab = m.config().n_vocab;
    MemoryGate gate({GateKind::kScalar, 2, 24, 16}, AttentionShape::of(m), 0.0f);
    const std::vector<TokenId> first = tokens(100, n_vocab, 1), second = tokens(60, n_vocab, 2);
    for (const KvPolicyOptions& kv : all_policies(&gate, type)) {
      const std::string what = absl::StrCat(kv.name, " ", kv_type_name(type));
      auto a = make_context(kv, cpu);
      feed(*a, first);
      const std::string bytes = state_of(a->policy());
      auto b = make_context(kv, cpu);
      ByteReader r(bytes, "snapshot");
      ASSERT_TRUE(b->policy().restore(r).ok()) << what;
      EXPECT_EQ(r.remaining(), 0u) << what;
      EXPECT_TRUE(state_of(b->policy()) == bytes) << what << ": the state round-trips bit for bit";
      EXPECT_EQ(b->n_past(), a->n_past()) << what;
      EXPECT_EQ(b->policy().n_kept(), a->policy().n_kept()) << what;
      EXPECT_EQ(b->policy().n_compressed(), a->policy().n_compressed()) << what;
      const std::vector<float> la = feed(*a, second), lb = feed(*b, second);
      ASSERT_EQ(la.size(), lb.size());
      EXPECT_EQ(std::memcmp(la.data(), lb.data(), la.size() * sizeof(float)), 0) << what;
    }
  }
}

TEST(KvSnapshot, TruncatedOrForeignBytesAreRefused) {
  const LlamaModel& m = tiny_model();
  kernels::cpu::ThreadPool pool(1);
  testing::CpuBackends cpu(pool);
  const std::vector<TokenId> toks = tokens(70, m.config().n_vocab, 3);
  for (const KvPolicyOptions& kv : all_policies(nullptr)) {
    auto a = make_context(kv, cpu);
    feed(*a, toks);
    std::string bytes;
    ByteWriter w(&bytes);
    ASSERT_TRUE(a->policy().save(w).ok());
    for (size_t cut : {size_t(0), size_t(7), bytes.size() / 2, bytes.size() - 1}) {
      auto b = make_context(kv, cpu);
      feed(*b, toks);  // a restore failure must leave the policy empty, not half-written
      ByteReader r(std::string_view(bytes).substr(0, cut), "snapshot");
      const Status st = b->policy().restore(r);
      EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss) << kv.name << " cut " << cut << ": " << st;
      EXPECT_NE(st.message().find("truncated"), std::string::npos) << st;
      EXPECT_EQ(b->n_past(), 0) << kv.name;
    }
    // The same policy with another shape refuses the bytes by name.
    KvPolicyOptions other = kv;
    other.n_ctx = 128;
    other.window = 20;
    other.segment = 8;
    auto c = make_context(other, cpu);
    ByteReader r(bytes, "snapshot");
    const Status st = c->policy().restore(r);
    EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << kv.name << ": " << st;
  }
}

TEST(KvSnapshot, DeltasRebuildTheStateBitForBitThroughFoldsAndGrowth) {
  // A replica built from the first snapshot and every later delta holds exactly the bytes of the
  // live state after every turn, through window evictions and memory folds (turns of odd sizes
  // fold 0, 1 or several times), and continues with the same logits.
  kernels::cpu::ThreadPool pool(2);
  testing::CpuBackends cpu(pool);
  const int turn_sizes[] = {5, 1, 9, 3, 17, 2, 1, 30, 7, 4, 50, 1, 6};
  for (KvType type : kAllTypes) {
    const LlamaModel& m = model_for(type);
    const int n_vocab = m.config().n_vocab;
    MemoryGate gate({GateKind::kScalar, 2, 24, 16}, AttentionShape::of(m), 0.0f);
    for (const KvPolicyOptions& kv : all_policies(&gate, type)) {
      const bool has_deltas = kv.name == "full" || kv.name == "streaming" || kv.name == "edgeinfinite";
      auto live = make_context(kv, cpu);
      auto replica = make_context(kv, cpu);
      size_t grown_from = live->policy().state_bytes();
      int n_deltas = 0, seed = 10;
      for (int n : turn_sizes) {
        feed(*live, tokens(n, n_vocab, uint64_t(seed++)));
        std::string delta;
        ByteWriter w(&delta);
        const size_t announced = live->policy().delta_size();
        if (testing::must(live->policy().save_delta(w), "save_delta")) {
          ++n_deltas;
          EXPECT_EQ(announced, delta.size())
              << kv.name << " " << kv_type_name(type) << ": delta_size() is what save_delta writes";
          EXPECT_LT(delta.size(), state_of(live->policy()).size() + 64) << kv.name << " " << kv_type_name(type);
          ByteReader r(delta, "delta");
          const Status st = replica->policy().apply_delta(r, pool);
          ASSERT_TRUE(st.ok()) << kv.name << " " << kv_type_name(type) << ": " << st;
          EXPECT_EQ(r.remaining(), 0u) << kv.name << " " << kv_type_name(type);
        } else {
          EXPECT_TRUE(delta.empty()) << kv.name << " " << kv_type_name(type) << ": a refused delta writes nothing";
          EXPECT_EQ(announced, 0u) << kv.name << " " << kv_type_name(type);
          const std::string whole = state_of(live->policy());
          ByteReader r(whole, "state");
          ASSERT_TRUE(replica->policy().restore(r).ok()) << kv.name << " " << kv_type_name(type);
        }
        live->policy().mark_saved();
        ASSERT_TRUE(state_of(replica->policy()) == state_of(live->policy()))
            << kv.name << " " << kv_type_name(type) << " after " << live->n_past();
      }
      if (has_deltas) {
        EXPECT_GE(n_deltas, 8) << kv.name << " " << kv_type_name(type) << ": most turns keep part of the marked window";
        EXPECT_GT(live->policy().state_bytes(), grown_from)
            << kv.name << " " << kv_type_name(type) << " grows with what it holds";
        EXPECT_LE(live->policy().state_bytes(), live->policy().max_state_bytes())
            << kv.name << " " << kv_type_name(type);
      } else {
        EXPECT_EQ(n_deltas, 0) << kv.name << " " << kv_type_name(type);
      }
      const std::vector<TokenId> next = tokens(20, n_vocab, 99);
      const std::vector<float> la = feed(*live, next), lb = feed(*replica, next);
      ASSERT_EQ(la.size(), lb.size());
      EXPECT_EQ(std::memcmp(la.data(), lb.data(), la.size() * sizeof(float)), 0)
          << kv.name << " " << kv_type_name(type);
    }
  }
}

TEST(KvSnapshot, DeltasForAnotherStateOrDamagedAreRefused) {
  const LlamaModel& m = tiny_model();
  const int n_vocab = m.config().n_vocab;
  kernels::cpu::ThreadPool pool(1);
  testing::CpuBackends cpu(pool);
  MemoryGate gate({GateKind::kScalar, 2, 24, 16}, AttentionShape::of(m), 0.0f);
  for (const KvPolicyOptions& kv : all_policies(&gate)) {
    if (kv.name != "full" && kv.name != "streaming" && kv.name != "edgeinfinite") continue;
    auto live = make_context(kv, cpu);
    feed(*live, tokens(30, n_vocab, 1));
    const std::string base = state_of(live->policy());
    live->policy().mark_saved();
    feed(*live, tokens(9, n_vocab, 2));
    std::string delta;
    ByteWriter w(&delta);
    ASSERT_TRUE(testing::must(live->policy().save_delta(w), "save_delta")) << kv.name;
    // Applied to a state other than the one it was taken from: FailedPrecondition, policy empty.
    auto other = make_context(kv, cpu);
    feed(*other, tokens(31, n_vocab, 1));
    ByteReader r(delta, "delta");
    EXPECT_EQ(other->policy().apply_delta(r, pool).code(), absl::StatusCode::kFailedPrecondition) << kv.name;
    EXPECT_EQ(other->n_past(), 0) << kv.name;
    // Truncated: DataLoss, policy empty.
    for (size_t cut : {size_t(0), size_t(12), delta.size() / 2, delta.size() - 1}) {
      auto replica = make_context(kv, cpu);
      ByteReader br(base, "state");
      ASSERT_TRUE(replica->policy().restore(br).ok());
      ByteReader dr(std::string_view(delta).substr(0, cut), "delta");
      EXPECT_EQ(replica->policy().apply_delta(dr, pool).code(), absl::StatusCode::kDataLoss) << kv.name << " " << cut;
      EXPECT_EQ(replica->n_past(), 0) << kv.name;
    }
  }
  // A policy without deltas says so.
  auto snap = make_context(all_policies(nullptr)[3], cpu);
  ByteReader r("", "delta");
  EXPECT_EQ(snap->policy().apply_delta(r, pool).code(), absl::StatusCode::kUnimplemented);
}

TEST(Snapshot, RoundTripsAndRefusesDamage) {
  const LlamaModel& m = tiny_model();
  kernels::cpu::ThreadPool pool(1);
  testing::CpuBackends cpu(pool);
  const KvPolicyOptions kv = all_policies(nullptr)[2];  // edgeinfinite
  auto a = make_context(kv, cpu);
  feed(*a, tokens(90, m.config().n_vocab, 4));
  SnapshotHeader h{m.gguf().fingerprint(), kv, "gate-123"};
  auto written = write_snapshot(h, "session-meta", a->policy());
  ASSERT_TRUE(written.ok()) << written.status();
  const std::string& bytes = *written;

  auto view = read_snapshot(bytes);
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->header.model_fingerprint, h.model_fingerprint);
  EXPECT_EQ(view->header.kv.name, "edgeinfinite");
  EXPECT_EQ(view->header.kv.window, kv.window);
  EXPECT_EQ(view->header.gate_id, "gate-123");
  EXPECT_EQ(view->session_meta, "session-meta");
  EXPECT_TRUE(check_compatible(h, view->header).ok());
  auto b = make_context(kv, cpu);
  ByteReader r(view->policy_state, "policy");
  ASSERT_TRUE(b->policy().restore(r).ok());
  EXPECT_EQ(b->n_past(), 90);

  // Every truncation is refused (and never crashes).
  for (size_t cut = 0; cut < bytes.size(); cut += (cut < 200 ? 1 : 997)) {
    const auto t = read_snapshot(std::string_view(bytes).substr(0, cut));
    EXPECT_FALSE(t.ok()) << "cut at " << cut;
    if (cut >= 8) {
      EXPECT_EQ(t.status().code(), absl::StatusCode::kDataLoss) << "cut at " << cut << ": " << t.status();
    }
  }
  // A flipped bit anywhere in the sections fails its checksum.
  for (size_t at : {size_t(70), bytes.size() / 2, bytes.size() - 1}) {
    std::string bad = bytes;
    bad[at] = char(bad[at] ^ 0x10);
    const auto t = read_snapshot(bad);
    EXPECT_EQ(t.status().code(), absl::StatusCode::kDataLoss) << "flip at " << at;
  }
  EXPECT_EQ(read_snapshot("not a snapshot at all").status().code(), absl::StatusCode::kDataLoss);

  // Another model, policy or gate: FailedPrecondition naming the difference.
  SnapshotHeader other = h;
  other.model_fingerprint = "0123456789abcdef";
  Status st = check_compatible(other, view->header);
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(st.message().find("model"), std::string::npos) << st;
  other = h;
  other.gate_id = "";
  st = check_compatible(other, view->header);
  EXPECT_NE(st.message().find("memory gate gate-123"), std::string::npos) << st;
}

// A snapshot written by the format's first version (f32 entries, no KV type in its header: a
// streaming session of the tiny model, S=2 W=24 L=16, 79 tokens through several window shifts)
// still loads: its state restores, saves back to the same bytes, continues, and is written again
// in the current version. A header naming a KV type this server does not know is refused.
TEST(Snapshot, VersionOneStillLoadsAndUnknownKvTypesAreRefused) {
  const std::string path = testing::test_data_dir() + "/snapshot_v1_streaming.snap";
  std::ifstream f(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  ASSERT_GT(bytes.size(), 16u) << path;
  uint32_t version = 0;
  std::memcpy(&version, bytes.data() + 8, sizeof version);
  ASSERT_EQ(version, 1u);
  const auto view = read_snapshot(bytes);
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->header.kv.name, "streaming");
  EXPECT_EQ(view->header.kv.kv_type, KvType::kF32);
  EXPECT_EQ(view->header.kv.sink, 2);
  EXPECT_EQ(view->header.kv.window, 24);
  EXPECT_EQ(view->header.kv.segment, 16);

  kernels::cpu::ThreadPool pool(1);
  testing::CpuBackends cpu(pool);
  auto c = make_context(view->header.kv, cpu);
  ByteReader r(view->policy_state, "policy");
  ASSERT_TRUE(c->policy().restore(r).ok());
  EXPECT_EQ(r.remaining(), 0u);
  EXPECT_EQ(c->n_past(), 79);
  EXPECT_EQ(c->policy().n_compressed(), 48);
  EXPECT_TRUE(state_of(c->policy()) == view->policy_state) << "f32 entries keep their layout";
  feed(*c, tokens(20, tiny_model().config().n_vocab, 5));
  EXPECT_EQ(c->n_past(), 99);

  const auto again = write_snapshot(view->header, view->session_meta, c->policy());
  ASSERT_TRUE(again.ok()) << again.status();
  std::memcpy(&version, again->data() + 8, sizeof version);
  EXPECT_EQ(version, kSnapshotVersion);
  const auto reread = read_snapshot(*again);
  ASSERT_TRUE(reread.ok()) << reread.status();
  EXPECT_EQ(reread->header.kv.kv_type, KvType::kF32);
  EXPECT_EQ(reread->session_meta, view->session_meta);

  SnapshotHeader odd = view->header;
  odd.kv.kv_type = KvType::kQ4_0;
  const auto foreign = write_snapshot(odd, "meta", c->policy());
  ASSERT_TRUE(foreign.ok());
  const auto refused = read_snapshot(*foreign);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition) << refused.status();
  EXPECT_NE(refused.status().message().find("KV type"), std::string::npos) << refused.status();
}

}  // namespace
}  // namespace edgeinf
