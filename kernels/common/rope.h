// Rotary-embedding angle of one rotated pair, shared by every backend.
#pragma once

#include <cmath>

#include "kernels/common/hd.h"

namespace edgeinf::kernels {

// Angle of pair i (0 <= i < n_rot/2) at position pos: pos * scale * base^(-2i/n_rot) / factor.
EDGEINF_HD float rope_angle(int pos, int i, int n_rot, float base, float scale, float factor) {
  const float inv_freq = powf(base, -2.0f * float(i) / float(n_rot));
  return float(pos) * scale * inv_freq / factor;
}

}  // namespace edgeinf::kernels
