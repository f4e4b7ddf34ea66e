// Choosing where the model runs: --device cpu|cuda|auto. Without a usable CUDA device, auto falls
// back to the CPU with the reason and cuda is an error naming it.
#include "engine/backend/backend.h"

#include <gtest/gtest.h>

#include "engine/model/gguf_writer.h"
#include "tests/must.h"

namespace edgeinf {
namespace {

// A one-layer model with zero weights: n_embd 8, 2 heads of 4, 1 KV head, n_ff 16, vocab 5.
std::unique_ptr<LlamaModel> small_model() {
  GgufWriter w;
  w.kv_str("general.architecture", "llama");
  w.kv_u32("llama.block_count", 1);
  w.kv_u32("llama.embedding_length", 8);
  w.kv_u32("llama.feed_forward_length", 16);
  w.kv_u32("llama.attention.head_count", 2);
  w.kv_u32("llama.attention.head_count_kv", 1);
  auto zeros = [](int64_t n) { return std::vector<float>(size_t(n), 0.0f); };
  w.tensor_f32("token_embd.weight", {8, 5}, zeros(40));
  w.tensor_f32("output_norm.weight", {8}, zeros(8));
  w.tensor_f32("blk.0.attn_norm.weight", {8}, zeros(8));
  w.tensor_f32("blk.0.attn_q.weight", {8, 8}, zeros(64));
  w.tensor_f32("blk.0.attn_k.weight", {8, 4}, zeros(32));
  w.tensor_f32("blk.0.attn_v.weight", {8, 4}, zeros(32));
  w.tensor_f32("blk.0.attn_output.weight", {8, 8}, zeros(64));
  w.tensor_f32("blk.0.ffn_norm.weight", {8}, zeros(8));
  w.tensor_f32("blk.0.ffn_gate.weight", {8, 16}, zeros(128));
  w.tensor_f32("blk.0.ffn_up.weight", {8, 16}, zeros(128));
  w.tensor_f32("blk.0.ffn_down.weight", {16, 8}, zeros(128));
  return testing::must(LlamaModel::from_gguf(testing::must(GgufFile::parse(w.bytes()), "GGUF")), "model");
}

TEST(Backend, CpuIsTheBuiltInPath) {
  auto m = small_model();
  auto b = open_backend("cpu", *m, nullptr);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(*b, nullptr);
}

TEST(Backend, UnknownDeviceIsAClearError) {
  auto m = small_model();
  auto b = open_backend("tpu", *m, nullptr);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(b.status().message(), "unknown device 'tpu' (expected cpu, cuda or auto)");
}

TEST(Backend, AutoAndCudaAgreeOnWhetherADeviceCanBeUsed) {
  auto m = small_model();
  auto cuda = open_backend("cuda", *m, nullptr);
  std::string note;
  auto automatic = open_backend("auto", *m, &note);
  ASSERT_TRUE(automatic.ok()) << automatic.status();
  if (cuda.ok()) {
    // A device is here: both give the CUDA backend.
    ASSERT_NE(*cuda, nullptr);
    ASSERT_NE(*automatic, nullptr);
    EXPECT_STREQ((*automatic)->device(), "cuda");
    EXPECT_TRUE((*automatic)->supports("edgeinfinite"));
    EXPECT_FALSE((*automatic)->supports("snapkv"));
    return;
  }
  // No device (or a build without CUDA): cuda says why, auto runs on the CPU and gives the same reason.
  const auto code = cuda.status().code();
  EXPECT_TRUE(code == absl::StatusCode::kFailedPrecondition || code == absl::StatusCode::kUnimplemented) << cuda.status();
  EXPECT_FALSE(cuda.status().message().empty());
  EXPECT_EQ(*automatic, nullptr);
  EXPECT_EQ(note, "running on the CPU: " + std::string(cuda.status().message()));
  if (cuda_backend_built()) {
    EXPECT_EQ(code, absl::StatusCode::kFailedPrecondition) << cuda.status();
  }
}

}  // namespace
}  // namespace edgeinf
