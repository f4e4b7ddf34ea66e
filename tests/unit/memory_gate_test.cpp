// The memory gate: values of both kinds, the side file round trip with its refusals (another
// model's fingerprint, another head layout, a file that is not a gate), the memory's query
// projection, files from before the KV type was recorded, and the shape a gate gives the policies
// that use it.
#include "engine/kv/memory_gate.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>

#include "engine/kv/kv_shape.h"
#include "engine/model/gguf_writer.h"
#include "kernels/reference/memory.h"

namespace edgeinf {
namespace {

AttentionShape shape() {
  AttentionShape s;
  s.n_layer = 2;
  s.n_head = 3;
  s.n_kv_head = 1;
  s.head_dim = 4;
  s.n_rot = 4;
  s.n_ctx_train = 512;
  return s;
}

std::string temp_path(const char* name) { return ::testing::TempDir() + name; }

// A scalar gate file of shape()'s layout for model "ab", written the way gates were before they
// recorded their KV type (no edgeinf.gate.kv_type).
GgufWriter scalar_gate_without_kv_type() {
  GgufWriter w;
  w.kv_str("general.architecture", "edgeinf.gate");
  w.kv_str("edgeinf.gate.kind", "scalar");
  w.kv_u32("edgeinf.gate.sink", 4);
  w.kv_u32("edgeinf.gate.window", 1020);
  w.kv_u32("edgeinf.gate.segment", 512);
  w.kv_str("edgeinf.gate.update", "delta");
  w.kv_str("edgeinf.gate.model_fingerprint", "ab");
  w.kv_u32("edgeinf.gate.block_count", 2);
  w.kv_u32("edgeinf.gate.head_count", 3);
  w.kv_u32("edgeinf.gate.head_dim", 4);
  for (int il = 0; il < 2; ++il) w.tensor_f32("blk." + std::to_string(il) + ".mem_gate.bias", {3}, {0.f, 1.f, 2.f});
  return w;
}

TEST(MemoryGate, ScalarGateIsSigmoidOfBias) {
  GateConfig c;
  MemoryGate g(c, shape(), 0.0f);
  g.bias(1)[2] = 2.0f;
  kernels::cpu::ThreadPool pool(1);
  std::vector<float> a(2 * 12, 1.0f), out(2 * 3);
  g.compute(1, a.data(), a.data(), 2, out.data(), pool);
  EXPECT_FLOAT_EQ(out[0], 0.5f);
  EXPECT_FLOAT_EQ(out[2], 1.0f / (1.0f + std::exp(-2.0f)));
  EXPECT_FLOAT_EQ(out[5], out[2]);
  MemoryGate closed(c, shape(), -INFINITY);
  closed.compute(0, a.data(), a.data(), 2, out.data(), pool);
  for (float v : out) EXPECT_EQ(v, 0.0f);
}

TEST(MemoryGate, LinearGateReadsBothInputs) {
  GateConfig c;
  c.kind = GateKind::kLinear;
  MemoryGate g(c, shape(), 0.0f);
  // Head 1 looks at A_mem[0] with weight +1 and A_local[0] with weight -1.
  std::vector<float>& w = g.weight(0);
  ASSERT_EQ(w.size(), size_t(3 * 24));
  w[size_t(1 * 24 + 0)] = 1.0f;
  w[size_t(1 * 24 + 12)] = -1.0f;
  kernels::cpu::ThreadPool pool(1);
  std::vector<float> mem(12, 0.0f), local(12, 0.0f), out(3);
  mem[0] = 3.0f;
  local[0] = 1.0f;
  g.compute(0, mem.data(), local.data(), 1, out.data(), pool);
  EXPECT_FLOAT_EQ(out[0], 0.5f);
  EXPECT_NEAR(out[1], 1.0f / (1.0f + std::exp(-2.0f)), 1e-6);
  EXPECT_EQ(g.n_params(), size_t(2 * (3 + 3 * 24)));
}

// The reference linear-gate kernel (the CUDA kernel's specification) agrees with MemoryGate::compute.
TEST(MemoryGate, ReferenceLinearGateKernelMatchesTheGate) {
  GateConfig c;
  c.kind = GateKind::kLinear;
  MemoryGate g(c, shape(), 0.0f);
  std::vector<float>& w = g.weight(1);
  for (size_t i = 0; i < w.size(); ++i) w[i] = std::sin(float(i)) * 0.3f;
  for (int h = 0; h < 3; ++h) g.bias(1)[size_t(h)] = 0.1f * float(h) - 0.2f;
  const int64_t n_tok = 5;
  std::vector<float> mem(size_t(n_tok * 12)), local(size_t(n_tok * 12));
  for (size_t i = 0; i < mem.size(); ++i) mem[i] = std::cos(float(i)), local[i] = std::sin(0.7f * float(i));
  kernels::cpu::ThreadPool pool(1);
  std::vector<float> want(size_t(n_tok * 3)), got(size_t(n_tok * 3));
  g.compute(1, mem.data(), local.data(), n_tok, want.data(), pool);
  kernels::reference::gate_linear_forward(
      {w.data(), g.bias(1).data(), mem.data(), local.data(), 12, got.data(), n_tok, 3, 4});
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-6f) << i;
}

TEST(MemoryGate, SideFileRoundTripAndRefusals) {
  GateConfig c;
  c.kind = GateKind::kLinear;
  c.sink = 8;
  c.window = 100;
  c.segment = 50;
  c.update = MemoryUpdate::kLinear;
  c.kv_type = KvType::kQ8_0;
  c.model_fingerprint = "00112233aabbccdd";
  c.calibration_hash = "feed";
  MemoryGate g(c, shape(), -1.5f);
  g.weight(1)[7] = 0.25f;
  const std::string path = temp_path("gate_roundtrip.gguf");
  ASSERT_TRUE(g.save(path).ok());

  auto back = MemoryGate::load(path, shape(), "00112233aabbccdd");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ((*back)->config().kind, GateKind::kLinear);
  EXPECT_EQ((*back)->config().sink, 8);
  EXPECT_EQ((*back)->config().window, 100);
  EXPECT_EQ((*back)->config().segment, 50);
  EXPECT_EQ((*back)->config().update, MemoryUpdate::kLinear);
  EXPECT_EQ((*back)->config().kv_type, KvType::kQ8_0);
  EXPECT_EQ((*back)->config().calibration_hash, "feed");
  EXPECT_EQ((*back)->bias(0), g.bias(0));
  EXPECT_EQ((*back)->weight(1), g.weight(1));

  auto other_model = MemoryGate::load(path, shape(), "ffffffffffffffff");
  ASSERT_FALSE(other_model.ok());
  EXPECT_EQ(other_model.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(std::string(other_model.status().message()).find("made for model"), std::string::npos);

  AttentionShape wider = shape();
  wider.n_head = 6;
  EXPECT_EQ(MemoryGate::load(path, wider, "00112233aabbccdd").status().code(), absl::StatusCode::kFailedPrecondition);

  GgufWriter not_gate;
  not_gate.kv_str("general.architecture", "llama");
  const std::string other = temp_path("not_a_gate.gguf");
  ASSERT_TRUE(not_gate.write_file(other).ok());
  EXPECT_EQ(MemoryGate::load(other, shape(), "").status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(MemoryGate::load(temp_path("missing.gguf"), shape(), "").status().code(), absl::StatusCode::kNotFound);
  std::remove(path.c_str());
  std::remove(other.c_str());
}

// The memory's query projection: identity when added, P q per head (the reference kernel's
// arithmetic, bit for bit), saved and loaded with the gate; a file with it in some layers only is
// refused, and a gate without one reads with the queries as they are.
TEST(MemoryGate, QueryProjectionRoundTripAndArithmetic) {
  GateConfig c;
  c.model_fingerprint = "ab";
  MemoryGate g(c, shape(), 0.5f);
  EXPECT_FALSE(g.has_query_projection());
  kernels::cpu::ThreadPool pool(2);
  const int64_t n_tok = 3, q_dim = 12;
  std::vector<float> q(size_t(n_tok * q_dim)), out(q.size(), -1.0f);
  for (size_t i = 0; i < q.size(); ++i) q[i] = std::sin(1.3f * float(i)) * 2.0f;
  EXPECT_EQ(g.memory_queries(0, q.data(), n_tok, out.data(), pool), q.data());
  EXPECT_EQ(out[0], -1.0f);

  const size_t plain = g.n_params();
  g.add_query_projection();
  ASSERT_TRUE(g.has_query_projection());
  ASSERT_EQ(g.query(1).size(), size_t(3 * 4 * 4));
  EXPECT_EQ(g.n_params(), plain + 2 * 3 * 16);
  const float* read = g.memory_queries(1, q.data(), n_tok, out.data(), pool);
  EXPECT_EQ(read, out.data());
  EXPECT_EQ(out, q) << "the identity projection changes the queries";

  for (size_t i = 0; i < g.query(1).size(); ++i) g.query(1)[i] = std::cos(0.37f * float(i));
  g.memory_queries(1, q.data(), n_tok, out.data(), pool);
  std::vector<float> want(q.size());
  kernels::reference::head_projection_forward({g.query(1).data(), q.data(), q_dim, want.data(), q_dim, n_tok, 3, 4});
  EXPECT_EQ(out, want);
  // Head 2 of token 1, output 3, by hand.
  float by_hand = 0;
  for (int j = 0; j < 4; ++j) by_hand += g.query(1)[size_t((2 * 4 + 3) * 4 + j)] * q[size_t(12 + 8 + j)];
  EXPECT_NEAR(out[size_t(12 + 8 + 3)], by_hand, 1e-6f);

  const std::string path = temp_path("gate_query.gguf");
  ASSERT_TRUE(g.save(path).ok());
  auto back = MemoryGate::load(path, shape(), "ab");
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_TRUE((*back)->has_query_projection());
  EXPECT_EQ((*back)->query(0), g.query(0));
  EXPECT_EQ((*back)->query(1), g.query(1));
  std::remove(path.c_str());

  // The projection in layer 1 only.
  GgufWriter w = scalar_gate_without_kv_type();
  w.tensor_f32("blk.1.mem_gate.query", {4, 4, 3}, std::vector<float>(48, 0.0f));
  const std::string partial = temp_path("gate_query_partial.gguf");
  ASSERT_TRUE(w.write_file(partial).ok());
  auto refused = MemoryGate::load(partial, shape(), "ab");
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(std::string(refused.status().message()).find("query"), std::string::npos) << refused.status();
  std::remove(partial.c_str());
}

// A file written before gates recorded their KV type was trained with f32 entries.
TEST(MemoryGate, FileWithoutKvTypeWasTrainedWithF32) {
  GgufWriter w = scalar_gate_without_kv_type();
  const std::string path = temp_path("gate_v1.gguf");
  ASSERT_TRUE(w.write_file(path).ok());
  auto g = MemoryGate::load(path, shape(), "ab");
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ((*g)->config().kv_type, KvType::kF32);
  EXPECT_EQ((*g)->config().window, 1020);
  std::remove(path.c_str());
}

// What a command line or the server leaves unset comes from the gate's training shape, KV type
// included; a given value wins, with a warning naming what the gate was trained with.
TEST(MemoryGate, GateGivesTheDefaultShapeAndKvType) {
  GateConfig c;
  c.sink = 4;
  c.window = 2044;
  c.segment = 512;
  c.kv_type = KvType::kQ8_0;
  const MemoryGate gate(c, shape(), 0.0f);

  KvPolicyOptions kv;
  auto warning = resolve_kv_shape(KvShapeRequest{}, &gate, &kv);
  ASSERT_TRUE(warning.ok()) << warning.status();
  EXPECT_EQ(*warning, "");
  EXPECT_EQ(kv.window, 2044);
  EXPECT_EQ(kv.kv_type, KvType::kQ8_0);

  KvShapeRequest given;
  given.kv_type = "f32";
  KvPolicyOptions explicit_kv;
  warning = resolve_kv_shape(given, &gate, &explicit_kv);
  ASSERT_TRUE(warning.ok()) << warning.status();
  EXPECT_EQ(explicit_kv.kv_type, KvType::kF32);
  EXPECT_EQ(*warning, "KV type f32 (the gate was trained with q8)");

  KvPolicyOptions no_gate;
  ASSERT_TRUE(resolve_kv_shape(KvShapeRequest{}, nullptr, &no_gate).ok());
  EXPECT_EQ(no_gate.kv_type, KvType::kF32);
  EXPECT_EQ(no_gate.window, 1024);

  given.kv_type = "q4";
  EXPECT_EQ(resolve_kv_shape(given, &gate, &kv).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(MemoryGate, DefaultPathSitsBesideTheModel) {
  EXPECT_EQ(default_gate_path("models/m.Q4_1.gguf"), "models/m.Q4_1.gate.gguf");
  EXPECT_EQ(default_gate_path("weights"), "weights.gate.gguf");
  auto none = load_default_gate("/nonexistent/model.gguf", "", shape(), "x");
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->get(), nullptr);
}

}  // namespace
}  // namespace edgeinf
