// CUDA runtime helpers of the CUDA kernels: error checking, and whether a device exists.
// Plain C++ (no CUDA headers needed by callers).
#pragma once

#include <string>

namespace edgeinf::kernels::cuda {

// True when a CUDA device and a driver that can run it are present; otherwise false with the
// reason in *why (no driver, no device, ...).
bool device_available(std::string* why);

// Device 0's peak figures, from its properties: memory bandwidth (bytes/s, DDR: 2 x clock x bus
// width) and FP32 FLOP/s (SMs x FP32 lanes per SM x 2 x clock). Zero when unknown.
struct DevicePeak {
  std::string name;
  double bandwidth = 0.0;  // bytes per second
  double fp32_flops = 0.0;
};
DevicePeak device_peak();

// Name, compute capability, memory, and peak bandwidth/FLOP figures of device 0, one line.
std::string device_summary();

}  // namespace edgeinf::kernels::cuda
