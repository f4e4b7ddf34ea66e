// IEEE half and bfloat16 <-> float conversion, bit-exact, usable on host and device.
#pragma once

#include <cstdint>
#include <cstring>

#include "kernels/common/hd.h"

namespace edgeinf::kernels {

EDGEINF_HD float bits_to_float(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

EDGEINF_HD uint32_t float_to_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

// Half (binary16) to float: exact for every input, subnormals and NaN included.
EDGEINF_HD float fp16_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) return bits_to_float(sign | 0x7f800000u | (mant << 13));
  if (exp != 0) return bits_to_float(sign | ((exp + 112u) << 23) | (mant << 13));
  if (mant == 0) return bits_to_float(sign);
  // Subnormal: value = mant * 2^-24.
  const float v = float(mant) * 5.9604644775390625e-08f;
  return sign ? -v : v;
}

// Float to half, round to nearest even; overflow goes to infinity.
EDGEINF_HD uint16_t float_to_fp16(float f) {
  const uint32_t x = float_to_bits(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t abs = x & 0x7fffffffu;
  if (abs >= 0x7f800000u) return uint16_t(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0u));
  if (abs >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // rounds past the largest half
  if (abs < 0x38800000u) {                                  // below the smallest normal half
    const float a = bits_to_float(abs);
    // Scale so that the subnormal step becomes 1, then round to nearest even.
    const float scaled = a * 16777216.0f;
    uint32_t m = uint32_t(scaled);
    const float rem = scaled - float(m);
    if (rem > 0.5f || (rem == 0.5f && (m & 1u))) ++m;
    return uint16_t(sign | m);
  }
  uint32_t m = abs + 0xc8000fffu + ((abs >> 13) & 1u);  // rebias exponent and round to nearest even
  return uint16_t(sign | (m >> 13));
}

EDGEINF_HD float bf16_to_float(uint16_t h) { return bits_to_float(uint32_t(h) << 16); }

EDGEINF_HD uint16_t float_to_bf16(float f) {
  uint32_t x = float_to_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return uint16_t((x >> 16) | 0x40u);  // quiet NaN
  x += 0x7fffu + ((x >> 16) & 1u);
  return uint16_t(x >> 16);
}

}  // namespace edgeinf::kernels
