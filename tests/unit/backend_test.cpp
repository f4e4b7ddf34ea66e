// Choosing where the model runs: --device cpu|cuda|auto. The CPU backend runs every policy; without
// a usable CUDA device, auto falls back to the CPU with the reason and cuda is an error naming it.
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

TEST(Backend, CpuRunsEveryPolicy) {
  auto m = small_model();
  kernels::cpu::ThreadPool pool(1);
  auto b = open_backends("cpu", *m, pool);
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_NE(b->cpu, nullptr);
  EXPECT_EQ(b->device, nullptr);
  EXPECT_STREQ(b->cpu->device(), "cpu");
  EXPECT_EQ(&b->cpu->model(), m.get());
  EXPECT_EQ(b->label(), "cpu");
  for (const std::string& name : kv_policy_names()) {
    EXPECT_TRUE(b->cpu->supports(name)) << name;
    EXPECT_EQ(&b->for_policy(name), b->cpu.get()) << name;
  }
  EXPECT_FALSE(b->cpu->supports("bogus"));
  KvPolicyOptions bogus;
  bogus.name = "bogus";
  auto p = b->cpu->make_policy(bogus);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Backend, UnknownDeviceIsAClearError) {
  auto m = small_model();
  kernels::cpu::ThreadPool pool(1);
  auto b = open_backends("tpu", *m, pool);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(b.status().message(), "unknown device 'tpu' (expected cpu, cuda or auto)");
}

TEST(Backend, AutoAndCudaAgreeOnWhetherADeviceCanBeUsed) {
  auto m = small_model();
  kernels::cpu::ThreadPool pool(1);
  auto cuda = open_backends("cuda", *m, pool);
  auto automatic = open_backends("auto", *m, pool);
  ASSERT_TRUE(automatic.ok()) << automatic.status();
  ASSERT_NE(automatic->cpu, nullptr);
  if (cuda.ok()) {
    // A device is here: both have the CUDA backend; auto keeps policies without a device form on
    // the CPU, cuda hands them to the device (which refuses them, saying why).
    ASSERT_NE(cuda->device, nullptr);
    ASSERT_NE(automatic->device, nullptr);
    EXPECT_STREQ(automatic->device->device(), "cuda");
    EXPECT_TRUE(automatic->device->supports("edgeinfinite"));
    EXPECT_FALSE(automatic->device->supports("snapkv"));
    EXPECT_EQ(&automatic->for_policy("edgeinfinite"), automatic->device.get());
    EXPECT_EQ(&automatic->for_policy("snapkv"), automatic->cpu.get());
    EXPECT_EQ(&cuda->for_policy("snapkv"), cuda->device.get());
    EXPECT_TRUE(automatic->note.empty());
    return;
  }
  // No device (or a build without CUDA): cuda says why, auto runs on the CPU and gives the same reason.
  const auto code = cuda.status().code();
  EXPECT_TRUE(code == absl::StatusCode::kFailedPrecondition || code == absl::StatusCode::kUnimplemented)
      << cuda.status();
  EXPECT_FALSE(cuda.status().message().empty());
  EXPECT_EQ(automatic->device, nullptr);
  EXPECT_EQ(&automatic->for_policy("edgeinfinite"), automatic->cpu.get());
  EXPECT_EQ(automatic->label(), "cpu");
  EXPECT_EQ(automatic->note, "running on the CPU: " + std::string(cuda.status().message()));
  if (cuda_backend_built()) {
    EXPECT_EQ(code, absl::StatusCode::kFailedPrecondition) << cuda.status();
  }
}

}  // namespace
}  // namespace edgeinf
