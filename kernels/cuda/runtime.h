// CUDA runtime helpers of the CUDA kernels: error checking, and whether a device exists.
// Plain C++ (no CUDA headers needed by callers).
#pragma once

#include <string>

namespace edgeinf::kernels::cuda {

// True when a CUDA device and a driver that can run it are present; otherwise false with the
// reason in *why (no driver, no device, ...).
bool device_available(std::string* why);

// Name, compute capability, memory, and peak bandwidth/FLOP figures of device 0, one line.
std::string device_summary();

}  // namespace edgeinf::kernels::cuda
