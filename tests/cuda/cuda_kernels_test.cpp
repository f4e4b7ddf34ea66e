// CUDA kernels against kernels/reference on odd shapes. Without a device every test skips with
// the reason; with one, `ctest -L cuda` runs them.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <random>
#include <vector>

#include "kernels/common/kv_rows.h"
#include "kernels/cuda/arena.h"
#include "kernels/cuda/cublas_api.h"
#include "kernels/cuda/ops.h"
#include "kernels/cuda/runtime.h"
#include "kernels/reference/dequantize.h"
#include "kernels/reference/memory.h"
#include "kernels/reference/ops.h"
#include "tests/kernels/attention_case.h"
#include "tests/tolerances.h"

namespace edgeinf::kernels {
namespace {

using testing::kCudaBlendTol;
using testing::kCudaElementwiseTol;
using testing::kCudaGemmTol;
using testing::kCudaReductionTol;

#define SKIP_WITHOUT_DEVICE()                                                     \
  do {                                                                            \
    std::string why;                                                              \
    if (!cuda::device_available(&why)) GTEST_SKIP() << "no CUDA device: " << why; \
  } while (0)

using testing::random_floats;

// A device copy of a host vector, copied back on demand.
template <typename T>
struct DeviceBuffer {
  T* ptr = nullptr;
  size_t n = 0;
  explicit DeviceBuffer(const std::vector<T>& host) : n(host.size()) {
    EXPECT_EQ(cudaMalloc(&ptr, n * sizeof(T)), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(ptr, host.data(), n * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  }
  ~DeviceBuffer() { cudaFree(ptr); }
  std::vector<T> host() const {
    std::vector<T> out(n);
    EXPECT_EQ(cudaMemcpy(out.data(), ptr, n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return out;
  }
};

void expect_close(const std::vector<float>& got, const std::vector<float>& want, float tol, const char* what) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_NEAR(got[i], want[i], tol * (1.0f + std::fabs(want[i]))) << what << " at " << i;
  }
}

TEST(CudaKernels, RmsNorm) {
  SKIP_WITHOUT_DEVICE();
  const int64_t n_tok = 7, n_embd = 579;
  const auto x = random_floats(size_t(n_tok * n_embd), 1), w = random_floats(size_t(n_embd), 2);
  std::vector<float> want(x.size());
  reference::rmsnorm_forward({x.data(), w.data(), want.data(), n_tok, n_embd, 1e-5f});
  DeviceBuffer<float> dx(x), dw(w), dout(std::vector<float>(x.size()));
  ASSERT_EQ(cuda::rmsnorm_forward({dx.ptr, dw.ptr, dout.ptr, n_tok, n_embd, 1e-5f}, nullptr), cudaSuccess);
  expect_close(dout.host(), want, kCudaElementwiseTol, "rmsnorm");
}

TEST(CudaKernels, RopeNormalAndNeox) {
  SKIP_WITHOUT_DEVICE();
  for (bool neox : {false, true}) {
    const int64_t n_tok = 5;
    const int n_head = 3, head_dim = 64, n_rot = 48;
    const int64_t stride = n_head * head_dim + 8;
    auto x = random_floats(size_t(n_tok * stride), 3);
    std::vector<int32_t> pos = {0, 1, 17, 1000, 8191};
    std::vector<float> factors = random_floats(size_t(n_rot / 2), 4);
    for (float& f : factors) f = 1.0f + std::fabs(f);
    DeviceBuffer<float> dx(x), df(factors);
    DeviceBuffer<int32_t> dp(pos);
    RopeParams p{x.data(), stride, pos.data(), n_tok, n_head, head_dim, n_rot, 10000.0f, 0.5f, factors.data(), neox};
    reference::rope_forward(p);
    p.x = dx.ptr;
    p.positions = dp.ptr;
    p.freq_factors = df.ptr;
    ASSERT_EQ(cuda::rope_forward(p, nullptr), cudaSuccess);
    expect_close(dx.host(), x, kCudaReductionTol, neox ? "rope neox" : "rope");
  }
}

TEST(CudaKernels, Swiglu) {
  SKIP_WITHOUT_DEVICE();
  const int64_t n_tok = 3, n_ff = 1537, stride = 1540;
  const auto g = random_floats(size_t(n_tok * stride), 5), u = random_floats(size_t(n_tok * stride), 6);
  std::vector<float> want(g.size(), 0.0f);
  reference::swiglu_forward({g.data(), u.data(), want.data(), stride, n_tok, n_ff});
  DeviceBuffer<float> dg(g), du(u), dout(std::vector<float>(g.size(), 0.0f));
  ASSERT_EQ(cuda::swiglu_forward({dg.ptr, du.ptr, dout.ptr, stride, n_tok, n_ff}, nullptr), cudaSuccess);
  expect_close(dout.host(), want, kCudaElementwiseTol, "swiglu");
}

// Prefill segments and single-token decode over a sink (+) window (+) segment cache, GQA, both
// cache layouts, the cache in f32, f16 and q8 (encoded by the reference's quantisers).
TEST(CudaKernels, SegmentAttentionWithOnlineSoftmax) {
  SKIP_WITHOUT_DEVICE();
  for (WeightType type : {WeightType::kF32, WeightType::kF16, WeightType::kQ8_0}) {
    for (const testing::AttentionCase& c : {testing::AttentionCase{1, 1, 9, 3, 64},
                                            {1, 1541, 9, 3, 64},
                                            {37, 300, 6, 2, 48, true},
                                            {64, 64, 4, 4, 128},
                                            {5, 1000, 9, 3, 64, true}}) {
      if (c.head_dim % kv_block_values(type) != 0) continue;
      const testing::AttentionInputs in = testing::attention_inputs(c, type, 7);
      std::vector<float> want(in.q.size());
      AttentionParams p = testing::attention_params(c, type, in.q.data(), in.k.data(), in.v.data(), want.data());
      reference::attention_forward(p);
      DeviceBuffer<float> dq(in.q), dout(std::vector<float>(want.size()));
      DeviceBuffer<uint8_t> dk(in.k), dv(in.v);
      p.q = dq.ptr;
      p.k = dk.ptr;
      p.v = dv.ptr;
      p.out = dout.ptr;
      ASSERT_EQ(cuda::attention_forward(p, nullptr), cudaSuccess);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      expect_close(dout.host(), want, kCudaReductionTol, weight_type_traits(uint32_t(type))->name);
    }
  }
}

// KV rows encoded and decoded on the device give the host encoder's bytes and values.
TEST(CudaKernels, KvRowsEncodeAndDecodeLikeTheHost) {
  SKIP_WITHOUT_DEVICE();
  const int64_t n = 7 * 192;
  const auto x = random_floats(size_t(n), 21);
  for (WeightType type : {WeightType::kF32, WeightType::kF16, WeightType::kQ8_0}) {
    const char* name = weight_type_traits(uint32_t(type))->name;
    std::vector<uint8_t> want(kv_value_offset(type, n));
    encode_kv_values(type, x.data(), want.data(), n);
    DeviceBuffer<float> dx(x), dy(std::vector<float>(static_cast<size_t>(n)));
    DeviceBuffer<uint8_t> enc(std::vector<uint8_t>(want.size()));
    ASSERT_EQ(cuda::kv_encode(type, dx.ptr, enc.ptr, n, nullptr), cudaSuccess) << name;
    ASSERT_EQ(cuda::kv_decode(type, enc.ptr, dy.ptr, n, nullptr), cudaSuccess) << name;
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_TRUE(enc.host() == want) << name;
    std::vector<float> back(static_cast<size_t>(n));
    reference::dequantize_row(type, want.data(), back.data(), n);
    EXPECT_TRUE(dy.host() == back) << name;
  }
}

TEST(CudaKernels, MemoryReadFusedWithGateBlend) {
  SKIP_WITHOUT_DEVICE();
  const int64_t n_tok = 11;
  const int n_head = 9, n_kv_head = 3, head_dim = 64;
  const int64_t q_dim = int64_t(n_head) * head_dim;
  // A memory built by the reference compressor, so M and z are realistic.
  std::vector<float> m(size_t(n_kv_head) * head_dim * head_dim, 0.0f), z(size_t(n_kv_head) * head_dim, 0.0f);
  const auto kk = random_floats(size_t(200 * n_kv_head * head_dim), 10),
             vv = random_floats(size_t(200 * n_kv_head * head_dim), 11);
  reference::memory_compress(
      {m.data(), z.data(), kk.data(), vv.data(), int64_t(n_kv_head) * head_dim, 200, n_kv_head, head_dim, true});
  const auto q = random_floats(size_t(n_tok * q_dim), 12), local = random_floats(size_t(n_tok * q_dim), 13);
  auto gate = random_floats(size_t(n_tok * n_head), 14);
  for (float& g : gate) g = 1.0f / (1.0f + std::exp(-g));
  gate[0] = 0.0f;  // a closed gate returns the local output exactly
  std::vector<float> a_mem(size_t(n_tok * q_dim)), want(size_t(n_tok * q_dim));
  reference::memory_decompress({m.data(), z.data(), q.data(), q_dim, a_mem.data(), n_tok, n_head, n_kv_head, head_dim});
  reference::gate_blend_forward({gate.data(), a_mem.data(), local.data(), want.data(), q_dim, n_tok, n_head, head_dim});
  DeviceBuffer<float> dm(m), dz(z), dq(q), dg(gate), dl(local), dout(std::vector<float>(want.size()));
  ASSERT_EQ(cuda::memory_read_blend(
                {dm.ptr, dz.ptr, dq.ptr, q_dim, dg.ptr, dl.ptr, dout.ptr, q_dim, n_tok, n_head, n_kv_head, head_dim},
                nullptr),
            cudaSuccess);
  const std::vector<float> got = dout.host();
  expect_close(got, want, kCudaReductionTol, "memory read + gate");
  for (int j = 0; j < head_dim; ++j) EXPECT_EQ(got[size_t(j)], local[size_t(j)]) << "closed gate, dim " << j;
}

// A memory with realistic contents: the reference compressor over random keys and values.
void realistic_memory(int n_kv_head, int head_dim, std::vector<float>* m, std::vector<float>* z) {
  m->assign(size_t(n_kv_head) * head_dim * head_dim, 0.0f);
  z->assign(size_t(n_kv_head) * head_dim, 0.0f);
  const auto kk = random_floats(size_t(200 * n_kv_head * head_dim), 30),
             vv = random_floats(size_t(200 * n_kv_head * head_dim), 31);
  reference::memory_compress(
      {m->data(), z->data(), kk.data(), vv.data(), int64_t(n_kv_head) * head_dim, 200, n_kv_head, head_dim, true});
}

TEST(CudaKernels, MemoryDecompressAlone) {
  SKIP_WITHOUT_DEVICE();
  const int64_t n_tok = 13;
  const int n_head = 6, n_kv_head = 2, head_dim = 96;
  const int64_t q_dim = int64_t(n_head) * head_dim;
  std::vector<float> m, z;
  realistic_memory(n_kv_head, head_dim, &m, &z);
  const auto q = random_floats(size_t(n_tok * q_dim), 32);
  std::vector<float> want(size_t(n_tok * q_dim));
  reference::memory_decompress({m.data(), z.data(), q.data(), q_dim, want.data(), n_tok, n_head, n_kv_head, head_dim});
  DeviceBuffer<float> dm(m), dz(z), dq(q), dout(std::vector<float>(want.size()));
  ASSERT_EQ(
      cuda::memory_decompress({dm.ptr, dz.ptr, dq.ptr, q_dim, dout.ptr, n_tok, n_head, n_kv_head, head_dim}, nullptr),
      cudaSuccess);
  expect_close(dout.host(), want, kCudaReductionTol, "memory read");
}

TEST(CudaKernels, LinearGateAndBlend) {
  SKIP_WITHOUT_DEVICE();
  const int64_t n_tok = 19;
  const int n_head = 9, head_dim = 64;
  const int64_t q_dim = int64_t(n_head) * head_dim, stride = q_dim + 5;  // rows with padding
  const auto w = random_floats(size_t(n_head * 2 * q_dim), 33, 0.05f), bias = random_floats(size_t(n_head), 34);
  const auto a_mem = random_floats(size_t(n_tok * stride), 35), a_local = random_floats(size_t(n_tok * stride), 36);
  std::vector<float> g(size_t(n_tok * n_head)), blended = a_local;
  reference::gate_linear_forward(
      {w.data(), bias.data(), a_mem.data(), a_local.data(), stride, g.data(), n_tok, n_head, head_dim});
  reference::gate_blend_forward(
      {g.data(), a_mem.data(), a_local.data(), blended.data(), stride, n_tok, n_head, head_dim});
  DeviceBuffer<float> dw(w), db(bias), dmem(a_mem), dloc(a_local), dg(std::vector<float>(g.size()));
  ASSERT_EQ(
      cuda::gate_linear_forward({dw.ptr, db.ptr, dmem.ptr, dloc.ptr, stride, dg.ptr, n_tok, n_head, head_dim}, nullptr),
      cudaSuccess);
  expect_close(dg.host(), g, kCudaElementwiseTol, "gate values");
  // The blend in place over a_local, from the reference gate values.
  DeviceBuffer<float> dgate(g);
  ASSERT_EQ(
      cuda::gate_blend_forward({dgate.ptr, dmem.ptr, dloc.ptr, dloc.ptr, stride, n_tok, n_head, head_dim}, nullptr),
      cudaSuccess);
  expect_close(dloc.host(), blended, kCudaBlendTol, "blend");
}

// The memory's query projection on odd shapes: head_dim 64 and 96, padded input rows.
TEST(CudaKernels, QueryProjectionPerHead) {
  SKIP_WITHOUT_DEVICE();
  for (const int head_dim : {64, 96}) {
    const int64_t n_tok = 17;
    const int n_head = 5;
    const int64_t q_dim = int64_t(n_head) * head_dim, x_stride = q_dim + 3;
    const auto w = random_floats(size_t(n_head) * size_t(head_dim * head_dim), 37, 0.2f);
    const auto x = random_floats(size_t(n_tok * x_stride), 38);
    std::vector<float> want(size_t(n_tok * q_dim));
    reference::head_projection_forward({w.data(), x.data(), x_stride, want.data(), q_dim, n_tok, n_head, head_dim});
    DeviceBuffer<float> dw(w), dx(x), dy(std::vector<float>(want.size()));
    ASSERT_EQ(
        cuda::head_projection_forward({dw.ptr, dx.ptr, x_stride, dy.ptr, q_dim, n_tok, n_head, head_dim}, nullptr),
        cudaSuccess);
    expect_close(dy.host(), want, kCudaReductionTol, "query projection");
  }
}

TEST(CudaKernels, EmbeddingRowsEveryWeightType) {
  SKIP_WITHOUT_DEVICE();
  const int64_t n_embd = 512, n_vocab = 29;
  const std::vector<int32_t> tokens = {3, 0, 28, 3, 17};
  for (WeightType t : {WeightType::kQ4_1, WeightType::kQ8_0, WeightType::kQ4_K, WeightType::kQ6_K, WeightType::kF16,
                       WeightType::kF32}) {
    const auto wf = random_floats(size_t(n_embd * n_vocab), 37);
    const int64_t rb = int64_t(row_bytes(t, n_embd));
    std::vector<uint8_t> w(size_t(rb * n_vocab));
    for (int64_t r = 0; r < n_vocab; ++r) reference::quantize_row(t, wf.data() + r * n_embd, w.data() + r * rb, n_embd);
    std::vector<float> want(tokens.size() * size_t(n_embd));
    for (size_t i = 0; i < tokens.size(); ++i) {
      reference::dequantize_row(t, w.data() + tokens[i] * rb, want.data() + int64_t(i) * n_embd, n_embd);
    }
    DeviceBuffer<uint8_t> dw(w);
    DeviceBuffer<int32_t> dt(tokens);
    DeviceBuffer<float> dout(std::vector<float>(want.size()));
    ASSERT_EQ(cuda::embed_forward({dw.ptr, t, rb, dt.ptr, dout.ptr, int64_t(tokens.size()), n_embd}, nullptr),
              cudaSuccess);
    EXPECT_EQ(dout.host(), want) << weight_type_traits(uint32_t(t))->name;  // decoding is exact
  }
}

TEST(CudaKernels, ResidualAdd) {
  SKIP_WITHOUT_DEVICE();
  const auto y = random_floats(1001, 38), x = random_floats(1001, 39);
  std::vector<float> want(y.size());
  for (size_t i = 0; i < y.size(); ++i) want[i] = y[i] + x[i];
  DeviceBuffer<float> dy(y), dx(x);
  ASSERT_EQ(cuda::add_forward({dy.ptr, dx.ptr, int64_t(y.size())}, nullptr), cudaSuccess);
  EXPECT_EQ(dy.host(), want);
}

TEST(CudaKernels, MemoryCompressLinearAndDelta) {
  SKIP_WITHOUT_DEVICE();
  const int n_kv_head = 3, d = 64;
  const int64_t n_tok = 37, stride = int64_t(n_kv_head) * d;
  for (bool delta : {false, true}) {
    // Start from a memory that already holds something, so the delta rule's retrieval matters.
    std::vector<float> m(size_t(n_kv_head) * d * d, 0.0f), z(size_t(n_kv_head) * d, 0.0f);
    const auto k0 = random_floats(size_t(50 * stride), 15), v0 = random_floats(size_t(50 * stride), 16);
    reference::memory_compress({m.data(), z.data(), k0.data(), v0.data(), stride, 50, n_kv_head, d, true});
    const auto k = random_floats(size_t(n_tok * stride), 17), v = random_floats(size_t(n_tok * stride), 18);
    DeviceBuffer<float> dm(m), dz(z), dk(k), dv(v), scratch(std::vector<float>(size_t(n_tok * stride)));
    reference::memory_compress({m.data(), z.data(), k.data(), v.data(), stride, n_tok, n_kv_head, d, delta});
    ASSERT_EQ(cuda::memory_compress({dm.ptr, dz.ptr, dk.ptr, dv.ptr, stride, n_tok, n_kv_head, d, delta}, scratch.ptr,
                                    nullptr),
              cudaSuccess);
    expect_close(dm.host(), m, kCudaReductionTol, delta ? "M (delta)" : "M (linear)");
    expect_close(dz.host(), z, kCudaElementwiseTol, "z");
  }
}

// A random weight matrix encoded as `type`, inputs and bias, the reference product, and the same on
// the device: `device` holds device pointers for the kernel under test to fill device y.
struct MatmulCase {
  std::vector<uint8_t> w;
  std::vector<float> x, bias, want;
  std::unique_ptr<DeviceBuffer<uint8_t>> dw;
  std::unique_ptr<DeviceBuffer<float>> dx, db, dy;
  MatmulParams device;

  MatmulCase(WeightType type, int64_t n_in, int64_t n_out, int64_t n_tok, uint32_t seed) {
    const auto wf = random_floats(size_t(n_in * n_out), seed);
    const int64_t rb = int64_t(row_bytes(type, n_in));
    w.resize(size_t(rb * n_out));
    for (int64_t r = 0; r < n_out; ++r) reference::quantize_row(type, wf.data() + r * n_in, w.data() + r * rb, n_in);
    x = random_floats(size_t(n_tok * n_in), seed + 1);
    bias = random_floats(size_t(n_out), seed + 2);
    want.resize(size_t(n_tok * n_out));
    MatmulParams p{w.data(), type, rb, x.data(), n_in, want.data(), n_out, bias.data(), n_tok, n_in, n_out};
    reference::matmul_forward(p);
    dw = std::make_unique<DeviceBuffer<uint8_t>>(w);
    dx = std::make_unique<DeviceBuffer<float>>(x);
    db = std::make_unique<DeviceBuffer<float>>(bias);
    dy = std::make_unique<DeviceBuffer<float>>(std::vector<float>(want.size()));
    device = p;
    device.w = dw->ptr;
    device.x = dx->ptr;
    device.bias = db->ptr;
    device.y = dy->ptr;
  }
};

TEST(CudaKernels, DequantisingGemvEveryWeightType) {
  SKIP_WITHOUT_DEVICE();
  for (WeightType t : {WeightType::kQ4_1, WeightType::kQ8_0, WeightType::kQ4_K, WeightType::kQ6_K, WeightType::kQ4_0,
                       WeightType::kF16, WeightType::kF32}) {
    for (int64_t n_tok : {1, 2, 5}) {
      MatmulCase c(t, 2 * 256 + 256, 37, n_tok, 19);
      ASSERT_EQ(cuda::gemv_forward(c.device, nullptr), cudaSuccess);
      expect_close(c.dy->host(), c.want, kCudaReductionTol, weight_type_traits(uint32_t(t))->name);
    }
  }
}

TEST(CudaKernels, PrefillGemmWithCublas) {
  SKIP_WITHOUT_DEVICE();
  std::string why;
  const cuda::CublasApi* blas = cuda::cublas_api(&why);
  ASSERT_NE(blas, nullptr) << why;
  cublasHandle_t handle = nullptr;
  ASSERT_EQ(blas->create(&handle), CUBLAS_STATUS_SUCCESS);
  const int64_t n_in = 576, n_out = 195;
  for (WeightType t : {WeightType::kQ4_1, WeightType::kQ6_K, WeightType::kF32}) {
    MatmulCase c(t, n_in, n_out, 77, 22);
    DeviceBuffer<float> scratch(std::vector<float>(size_t(n_in * n_out)));
    ASSERT_EQ(cuda::gemm_forward(c.device, scratch.ptr, handle, nullptr), cudaSuccess);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    // cuBLAS sums in another order: a looser bound than the element kernels.
    expect_close(c.dy->host(), c.want, kCudaGemmTol, weight_type_traits(uint32_t(t))->name);
  }
  blas->destroy(handle);
}

TEST(CudaKernels, ArenaHandsOutAlignedPiecesAndRefusesOverflow) {
  SKIP_WITHOUT_DEVICE();
  cuda::DeviceArena arena;
  std::string why;
  ASSERT_TRUE(arena.reserve(1 << 20, &why)) << why;
  float* a = arena.take<float>(3);
  float* b = arena.take<float>(1000);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b) % 256, 0u);
  EXPECT_GE(reinterpret_cast<char*>(b) - reinterpret_cast<char*>(a), 12);
  EXPECT_EQ(arena.take<float>(1 << 20), nullptr);
  arena.reset();
  EXPECT_EQ(arena.take<float>(3), a);
}

}  // namespace
}  // namespace edgeinf::kernels
