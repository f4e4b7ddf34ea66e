#include <cuda_runtime.h>

#include <cstdio>

#include "kernels/cuda/runtime.h"

namespace edgeinf::kernels::cuda {

bool device_available(std::string* why) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    if (why != nullptr) *why = cudaGetErrorString(e);
    return false;
  }
  if (n == 0) {
    if (why != nullptr) *why = "no CUDA device";
    return false;
  }
  return true;
}

namespace {

// FP32 lanes per SM by compute capability (CUDA C++ Programming Guide, arithmetic throughput).
int fp32_lanes_per_sm(int major, int minor) {
  if (major == 8 && minor == 0) return 64;  // A100
  if (major >= 8) return 128;               // sm_86/89 (Ampere/Ada consumer), sm_90 (Hopper), newer
  return 64;
}

}  // namespace

DevicePeak device_peak() {
  DevicePeak peak;
  cudaDeviceProp p{};
  if (cudaGetDeviceProperties(&p, 0) != cudaSuccess) return peak;
  int mem_clock_khz = 0, bus_bits = 0, sm_clock_khz = 0;
  cudaDeviceGetAttribute(&mem_clock_khz, cudaDevAttrMemoryClockRate, 0);
  cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, 0);
  cudaDeviceGetAttribute(&sm_clock_khz, cudaDevAttrClockRate, 0);
  peak.name = p.name;
  peak.bandwidth = 2.0 * double(mem_clock_khz) * 1e3 * double(bus_bits) / 8.0;
  peak.fp32_flops =
      double(p.multiProcessorCount) * fp32_lanes_per_sm(p.major, p.minor) * 2.0 * double(sm_clock_khz) * 1e3;
  return peak;
}

std::string device_summary() {
  cudaDeviceProp p{};
  if (cudaGetDeviceProperties(&p, 0) != cudaSuccess) return "unknown device";
  const DevicePeak peak = device_peak();
  char buf[256];
  std::snprintf(buf, sizeof buf, "%s (sm_%d%d), %.1f GiB, %d SMs, ~%.0f GB/s and ~%.1f FP32 TFLOP/s peak", p.name,
                p.major, p.minor, double(p.totalGlobalMem) / (1 << 30), p.multiProcessorCount, peak.bandwidth / 1e9,
                peak.fp32_flops / 1e12);
  return buf;
}

}  // namespace edgeinf::kernels::cuda
