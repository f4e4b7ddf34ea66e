// edgeinf-kernel-bench: times each CUDA kernel at the shapes the service runs (SmolLM2-135M's, and a
// 4096-wide layer where GEMV is bandwidth-bound) and prints achieved memory bandwidth and FLOP/s
// against the device's peak (kernels/cuda/runtime.h). Usage: edgeinf-kernel-bench [--reps N].
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "kernels/common/quant_blocks.h"
#include "kernels/cuda/cublas_api.h"
#include "kernels/cuda/ops.h"
#include "kernels/cuda/runtime.h"
#include "kernels/reference/dequantize.h"

namespace edgeinf::kernels::cuda {
namespace {

#define BENCH_CHECK(expr)                                                     \
  do {                                                                        \
    const cudaError_t e_ = (expr);                                            \
    if (e_ != cudaSuccess) {                                                  \
      std::fprintf(stderr, "%s failed: %s\n", #expr, cudaGetErrorString(e_)); \
      std::exit(1);                                                           \
    }                                                                         \
  } while (0)

// Device buffers that live until the end of the run.
std::vector<void*> g_allocations;

template <typename T>
T* device_copy(const std::vector<T>& host) {
  void* p = nullptr;
  BENCH_CHECK(cudaMalloc(&p, host.size() * sizeof(T)));
  BENCH_CHECK(cudaMemcpy(p, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
  g_allocations.push_back(p);
  return static_cast<T*>(p);
}

std::vector<float> random_floats(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

float* device_floats(size_t n, uint32_t seed, float scale = 1.0f) { return device_copy(random_floats(n, seed, scale)); }

// A weight matrix [n_out, n_in] of `type`, on the device.
const void* device_weight(WeightType type, int64_t n_in, int64_t n_out, uint32_t seed) {
  const std::vector<float> f = random_floats(size_t(n_in * n_out), seed, 0.05f);
  const int64_t rb = int64_t(row_bytes(type, n_in));
  std::vector<uint8_t> w(size_t(rb * n_out));
  for (int64_t r = 0; r < n_out; ++r) reference::quantize_row(type, f.data() + r * n_in, w.data() + r * rb, n_in);
  return device_copy(w);
}

struct Row {
  std::string op, shape;
  double seconds, bytes, flops;
};

// Median-free mean over reps after one warm-up, timed with events on the stream.
double time_op(const std::function<cudaError_t()>& op, int reps, cudaStream_t stream) {
  BENCH_CHECK(op());
  BENCH_CHECK(cudaStreamSynchronize(stream));
  cudaEvent_t start, stop;
  BENCH_CHECK(cudaEventCreate(&start));
  BENCH_CHECK(cudaEventCreate(&stop));
  BENCH_CHECK(cudaEventRecord(start, stream));
  for (int r = 0; r < reps; ++r) BENCH_CHECK(op());
  BENCH_CHECK(cudaEventRecord(stop, stream));
  BENCH_CHECK(cudaEventSynchronize(stop));
  float ms = 0.0f;
  BENCH_CHECK(cudaEventElapsedTime(&ms, start, stop));
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return double(ms) / 1e3 / reps;
}

int run(int argc, char** argv) {
  int reps = 50;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
      reps = std::atoi(argv[++i]);
    } else {
      std::printf(
          "usage: edgeinf-kernel-bench [--reps N]\n"
          "Times each CUDA kernel and prints achieved bandwidth and FLOP/s against the device's peak.\n");
      return std::strcmp(argv[i], "--help") == 0 ? 0 : 2;
    }
  }
  if (reps <= 0) reps = 1;
  std::string why;
  if (!device_available(&why)) {
    std::fprintf(stderr, "edgeinf-kernel-bench: no CUDA device: %s\n", why.c_str());
    return 1;
  }
  const DevicePeak peak = device_peak();
  std::printf("device: %s\npeak: %.0f GB/s memory, %.1f TFLOP/s FP32\n\n", device_summary().c_str(),
              peak.bandwidth / 1e9, peak.fp32_flops / 1e12);
  cudaStream_t stream;
  BENCH_CHECK(cudaStreamCreate(&stream));
  const CublasApi* blas = cublas_api(&why);
  cublasHandle_t cublas = nullptr;
  if (blas == nullptr || blas->create(&cublas) != CUBLAS_STATUS_SUCCESS) {
    std::fprintf(stderr, "cuBLAS could not be initialised: %s\n", why.c_str());
    return 1;
  }
  // The bandwidth a device-to-device copy reaches (bytes read and written): the measured bound
  // that decode's weight traffic is compared with.
  double copy_bw = 0.0;
  {
    const size_t n = size_t(256) << 20;
    void *a = nullptr, *b = nullptr;
    BENCH_CHECK(cudaMalloc(&a, n));
    BENCH_CHECK(cudaMalloc(&b, n));
    BENCH_CHECK(cudaMemsetAsync(a, 1, n, stream));
    const double t = time_op([&] { return cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice, stream); },
                             std::max(1, reps / 5), stream);
    copy_bw = 2.0 * double(n) / t;
    cudaFree(a);
    cudaFree(b);
  }
  std::printf("measured: %.0f GB/s device-to-device copy (bytes read + written)\n\n", copy_bw / 1e9);
  std::vector<Row> rows;
  auto add = [&](std::string op, std::string shape, const std::function<cudaError_t()>& f, double bytes, double flops) {
    rows.push_back({std::move(op), std::move(shape), time_op(f, reps, stream), bytes, flops});
  };

  // SmolLM2-135M: n_embd 576, n_ff 1536, 9 query / 3 KV heads of 64, vocabulary 49152; EdgeInfinite
  // S=4 W=1020 L=512 (a full cache holds 1536 entries).
  const int n_head = 9, n_kv_head = 3, d = 64;
  const int64_t q_dim = n_head * d, kv_dim = n_kv_head * d, n_embd = 576, n_ff = 1536, n_cache = 1536, seg = 512;

  // Dequantising GEMV (decode, one token): weight bytes dominate.
  for (WeightType t : {WeightType::kQ4_1, WeightType::kQ8_0, WeightType::kQ4_K, WeightType::kQ6_K, WeightType::kF16}) {
    const char* name = weight_type_traits(uint32_t(t))->name;
    for (auto [n_in, n_out] : {std::pair<int64_t, int64_t>{4096, 4096}, {n_embd, 49152}, {n_embd, n_ff}}) {
      MatmulParams p;
      p.w = device_weight(t, n_in, n_out, 1);
      p.w_type = t;
      p.w_row_bytes = int64_t(row_bytes(t, n_in));
      p.x = device_floats(size_t(n_in), 2);
      p.x_stride = n_in;
      p.y = device_floats(size_t(n_out), 3);
      p.y_stride = n_out;
      p.n_tok = 1;
      p.n_in = n_in;
      p.n_out = n_out;
      const double bytes = double(p.w_row_bytes * n_out) + 4.0 * double(n_in + n_out);
      add(
          std::string("gemv ") + name, std::to_string(n_out) + "x" + std::to_string(n_in) + " x1",
          [=] { return gemv_forward(p, stream); }, bytes, 2.0 * double(n_in * n_out));
    }
  }
  // Prefill GEMM (512 tokens): decode the weights into the scratch, then cuBLAS SGEMM.
  for (WeightType t : {WeightType::kQ4_1, WeightType::kQ8_0}) {
    for (auto [n_in, n_out] : {std::pair<int64_t, int64_t>{n_embd, n_ff}, {4096, 4096}}) {
      MatmulParams p;
      p.w = device_weight(t, n_in, n_out, 4);
      p.w_type = t;
      p.w_row_bytes = int64_t(row_bytes(t, n_in));
      p.x = device_floats(size_t(seg * n_in), 5);
      p.x_stride = n_in;
      p.y = device_floats(size_t(seg * n_out), 6);
      p.y_stride = n_out;
      p.n_tok = seg;
      p.n_in = n_in;
      p.n_out = n_out;
      float* scratch = device_floats(size_t(n_in * n_out), 7);
      const double bytes =
          double(p.w_row_bytes * n_out) + 4.0 * double(n_in * n_out) * 2 + 4.0 * double(seg * (n_in + n_out));
      add(
          std::string("gemm ") + weight_type_traits(uint32_t(t))->name,
          std::to_string(n_out) + "x" + std::to_string(n_in) + " x512",
          [=] { return gemm_forward(p, scratch, cublas, stream); }, bytes, 2.0 * double(seg * n_in * n_out));
    }
  }
  // Segment attention over sink (+) window (+) segment: decode (1 query) and a prefill segment.
  {
    const float* k = device_floats(size_t(n_cache * kv_dim), 8);
    const float* v = device_floats(size_t(n_cache * kv_dim), 9);
    for (int64_t n_tok : {int64_t(1), seg}) {
      AttentionParams p;
      p.q = device_floats(size_t(n_tok * q_dim), 10);
      p.q_stride = q_dim;
      p.k = k;
      p.v = v;
      p.kv_stride = kv_dim;
      p.kv_head_stride = d;
      p.out = device_floats(size_t(n_tok * q_dim), 11);
      p.out_stride = q_dim;
      p.n_tok = n_tok;
      p.n_kv = n_cache;
      p.causal_base = n_cache - n_tok;
      p.n_head = n_head;
      p.n_kv_head = n_kv_head;
      p.head_dim = d;
      p.scale = 0.125f;
      // Keys each query sees, summed: causal inside the segment.
      double visible = 0;
      for (int64_t t = 0; t < n_tok; ++t) visible += double(n_cache - n_tok + t + 1);
      const double flops = 4.0 * visible * d * n_head;  // QK^T and PV
      const double bytes = 2.0 * 4.0 * double(n_cache * kv_dim) + 2.0 * 4.0 * double(n_tok * q_dim);
      add(
          "attention", std::to_string(n_tok) + "q x " + std::to_string(n_cache) + "kv",
          [=] { return attention_forward(p, stream); }, bytes, flops);
    }
  }
  // Memory compression of one folded segment (delta rule), read fused with the gate, read alone.
  {
    float* m = device_floats(size_t(n_kv_head * d * d), 12, 0.01f);
    float* z = device_copy(std::vector<float>(size_t(n_kv_head * d), 1.0f));
    const float* k = device_floats(size_t(seg * kv_dim), 13);
    const float* v = device_floats(size_t(seg * kv_dim), 14);
    float* scratch = device_floats(size_t(seg * kv_dim), 15);
    MemoryCompressParams c{m, z, k, v, kv_dim, seg, n_kv_head, d, true};
    add(
        "memory compress (delta)", "512 tok", [=] { return memory_compress(c, scratch, stream); },
        4.0 * double(2 * seg * kv_dim + 2 * n_kv_head * d * d), 4.0 * double(seg * n_kv_head * d * d));
    const float* q = device_floats(size_t(seg * q_dim), 16);
    const float* gate = device_floats(size_t(seg * n_head), 17, 0.1f);
    float* out = device_floats(size_t(seg * q_dim), 18);
    MemoryReadBlendParams rb{m, z, q, q_dim, gate, out, out, q_dim, seg, n_head, n_kv_head, d};
    add(
        "memory read + gate blend", "512 tok", [=] { return memory_read_blend(rb, stream); },
        4.0 * double(3 * seg * q_dim + n_kv_head * d * d), 2.0 * double(seg * n_head * d * d));
    MemoryDecompressParams r{m, z, q, q_dim, out, seg, n_head, n_kv_head, d};
    add(
        "memory read", "512 tok", [=] { return memory_decompress(r, stream); },
        4.0 * double(2 * seg * q_dim + n_kv_head * d * d), 2.0 * double(seg * n_head * d * d));
  }
  // Element-wise ops of a 512-token batch.
  {
    float* x = device_floats(size_t(seg * n_ff), 19);
    float* y = device_floats(size_t(seg * n_ff), 20);
    const float* w = device_floats(size_t(n_embd), 21);
    add(
        "rmsnorm", "512x576",
        [=] {
          return rmsnorm_forward({x, w, y, seg, n_embd, 1e-5f}, stream);
        },
        4.0 * double(2 * seg * n_embd), 4.0 * double(seg * n_embd));
    add(
        "swiglu", "512x1536",
        [=] {
          return swiglu_forward({x, y, x, n_ff, seg, n_ff}, stream);
        },
        4.0 * double(3 * seg * n_ff), 5.0 * double(seg * n_ff));
    std::vector<int32_t> pos(static_cast<size_t>(seg));
    for (int64_t i = 0; i < seg; ++i) pos[size_t(i)] = int32_t(i);
    const int32_t* dpos = device_copy(pos);
    RopeParams rp{x, q_dim, dpos, seg, n_head, d, d, 10000.0f, 1.0f, nullptr, false};
    add(
        "rope", "512x9x64", [=] { return rope_forward(rp, stream); }, 4.0 * double(2 * seg * q_dim),
        6.0 * double(seg * q_dim / 2));
  }

  std::printf("%-26s %-18s %10s %10s %7s %7s %10s %7s\n", "kernel", "shape", "time us", "GB/s", "%BW", "%copy",
              "GFLOP/s", "%FP32");
  std::string json;
  for (const Row& r : rows) {
    const double gbs = r.bytes / r.seconds / 1e9, gflops = r.flops / r.seconds / 1e9;
    std::printf("%-26s %-18s %10.1f %10.1f %6.1f%% %6.1f%% %10.1f %6.1f%%\n", r.op.c_str(), r.shape.c_str(),
                r.seconds * 1e6, gbs, peak.bandwidth > 0 ? 100.0 * gbs * 1e9 / peak.bandwidth : 0.0,
                copy_bw > 0 ? 100.0 * gbs * 1e9 / copy_bw : 0.0, gflops,
                peak.fp32_flops > 0 ? 100.0 * gflops * 1e9 / peak.fp32_flops : 0.0);
    char buf[320];
    std::snprintf(buf, sizeof buf,
                  "%s{\"kernel\":\"%s\",\"shape\":\"%s\",\"seconds\":%.9f,\"bytes_per_s\":%.4g,\"flop_per_s\":%.4g}",
                  json.empty() ? "" : ",", r.op.c_str(), r.shape.c_str(), r.seconds, r.bytes / r.seconds,
                  r.flops / r.seconds);
    json += buf;
  }
  std::printf(
      "JSON {\"device\":\"%s\",\"peak_bytes_per_s\":%.4g,\"copy_bytes_per_s\":%.4g,\"peak_fp32_flop_per_s\":%.4g,"
      "\"results\":[%s]}\n",
      peak.name.c_str(), peak.bandwidth, copy_bw, peak.fp32_flops, json.c_str());
  blas->destroy(cublas);
  for (void* p : g_allocations) cudaFree(p);
  cudaStreamDestroy(stream);
  return 0;
}

}  // namespace
}  // namespace edgeinf::kernels::cuda

int main(int argc, char** argv) { return edgeinf::kernels::cuda::run(argc, argv); }
