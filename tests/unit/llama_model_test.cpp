// Model loading: hyper-parameters from metadata, and clear refusals for unsupported
// architectures, missing tensors, wrong shapes and inconsistent head counts.
#include "engine/model/llama_model.h"

#include <gtest/gtest.h>

#include "engine/model/gguf_writer.h"

namespace edgeinf {
namespace {

std::vector<uint8_t> zeros_f32(int64_t n) { return std::vector<uint8_t>(size_t(n) * 4); }

// A one-layer model: n_embd 8, 2 heads of 4, 1 KV head, n_ff 16, vocab 5.
GgufWriter tiny_model(const std::string& arch, bool with_ffn_down = true, int64_t wq_rows = 8,
                      uint32_t head_count_kv = 1) {
  GgufWriter w;
  w.kv_str("general.architecture", arch);
  w.kv_u32(arch + ".block_count", 1);
  w.kv_u32(arch + ".embedding_length", 8);
  w.kv_u32(arch + ".feed_forward_length", 16);
  w.kv_u32(arch + ".attention.head_count", 2);
  w.kv_u32(arch + ".attention.head_count_kv", head_count_kv);
  w.kv_f32(arch + ".rope.freq_base", 500000.0f);
  w.kv_u32(arch + ".context_length", 2048);
  w.tensor("token_embd.weight", {8, 5}, 0, zeros_f32(40));
  w.tensor("output_norm.weight", {8}, 0, zeros_f32(8));
  w.tensor("blk.0.attn_norm.weight", {8}, 0, zeros_f32(8));
  w.tensor("blk.0.attn_q.weight", {8, wq_rows}, 0, zeros_f32(8 * wq_rows));
  w.tensor("blk.0.attn_k.weight", {8, 4}, 0, zeros_f32(32));
  w.tensor("blk.0.attn_v.weight", {8, 4}, 0, zeros_f32(32));
  w.tensor("blk.0.attn_output.weight", {8, 8}, 0, zeros_f32(64));
  w.tensor("blk.0.ffn_norm.weight", {8}, 0, zeros_f32(8));
  w.tensor("blk.0.ffn_gate.weight", {8, 16}, 0, zeros_f32(128));
  w.tensor("blk.0.ffn_up.weight", {8, 16}, 0, zeros_f32(128));
  if (with_ffn_down) w.tensor("blk.0.ffn_down.weight", {16, 8}, 0, zeros_f32(128));
  return w;
}

StatusOr<std::unique_ptr<LlamaModel>> load(const std::vector<uint8_t>& bytes) {
  EDGEINF_ASSIGN_OR_RETURN(auto gguf, GgufFile::parse(bytes));
  return LlamaModel::from_gguf(std::move(gguf));
}

TEST(LlamaModel, ReadsHyperParameters) {
  const std::vector<uint8_t> bytes = tiny_model("llama").bytes();
  auto m = load(bytes);
  ASSERT_TRUE(m.ok()) << m.status();
  const LlamaConfig& c = (*m)->config();
  EXPECT_EQ(c.n_layer, 1);
  EXPECT_EQ(c.n_embd, 8);
  EXPECT_EQ(c.n_head, 2);
  EXPECT_EQ(c.n_kv_head, 1);
  EXPECT_EQ(c.head_dim, 4);
  EXPECT_EQ(c.n_rot, 4);
  EXPECT_EQ(c.n_vocab, 5);
  EXPECT_EQ(c.n_ctx_train, 2048);
  EXPECT_FLOAT_EQ(c.rope_base, 500000.0f);
  EXPECT_TRUE(c.tied_output);
  EXPECT_FALSE(c.rope_neox);
}

TEST(LlamaModel, Qwen2UsesNeoxRotation) {
  const std::vector<uint8_t> bytes = tiny_model("qwen2").bytes();
  auto m = load(bytes);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_TRUE((*m)->config().rope_neox);
}

TEST(LlamaModel, RefusesUnsupportedArchitectureByName) {
  auto m = load(tiny_model("gpt2").bytes());
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_NE(std::string(m.status().message()).find("'gpt2' is not supported"), std::string::npos) << m.status();
}

TEST(LlamaModel, RefusesMissingTensor) {
  auto m = load(tiny_model("llama", /*with_ffn_down=*/false).bytes());
  ASSERT_FALSE(m.ok());
  EXPECT_NE(std::string(m.status().message()).find("blk.0.ffn_down.weight"), std::string::npos) << m.status();
}

TEST(LlamaModel, RefusesWrongShape) {
  auto m = load(tiny_model("llama", true, /*wq_rows=*/6).bytes());
  ASSERT_FALSE(m.ok());
  EXPECT_NE(std::string(m.status().message()).find("blk.0.attn_q.weight"), std::string::npos) << m.status();
}

TEST(LlamaModel, RefusesInconsistentHeads) {
  // 2 query heads cannot share 3 KV heads: the head-count check says so (the key appears once).
  auto m = load(tiny_model("llama", true, 8, /*head_count_kv=*/3).bytes());
  ASSERT_FALSE(m.ok());
  EXPECT_NE(std::string(m.status().message()).find("inconsistent head counts: 2 query heads, 3 KV heads"),
            std::string::npos)
      << m.status();
}

TEST(LlamaModel, RefusesUnknownRopeScaling) {
  GgufWriter w = tiny_model("llama");
  w.kv_str("llama.rope.scaling.type", "yarn");
  auto m = load(w.bytes());
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_NE(std::string(m.status().message()).find("yarn"), std::string::npos);
}

}  // namespace
}  // namespace edgeinf
