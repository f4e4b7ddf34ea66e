// The compressed memory of EdgeInfinite (Infini-attention style linear attention), one element at
// a time, shared by every backend. Per KV head: M [head_dim (key), head_dim (value)], z [head_dim].
#pragma once

#include <cmath>

#include "kernels/common/hd.h"

namespace edgeinf::kernels {

// Added to the retrieval denominator so an (almost) empty memory never divides by zero.
inline constexpr float kMemoryEps = 1e-6f;

// The feature map sigma(x) = ELU(x) + 1 > 0.
EDGEINF_HD float elu1(float x) { return x > 0.0f ? x + 1.0f : expf(x); }

// Memory write of one token, one element: M[i][j] += sk[i] * (v[j] - delta_j), where delta_j is
// 0 for the linear rule and sk.M[:, j] / (sk.z) (before the segment's update) for the delta rule.
EDGEINF_HD float memory_write(float m_ij, float sk_i, float v_j, float retrieved_j) {
  return m_ij + sk_i * (v_j - retrieved_j);
}

// Memory read of one output element: (sq . M[:, j]) / (sq . z + eps).
EDGEINF_HD float memory_read(float sq_dot_mj, float sq_dot_z) { return sq_dot_mj / (sq_dot_z + kMemoryEps); }

// One output of the memory's query projection: row . x over head_dim, summed in index order.
EDGEINF_HD float head_project(const float* row, const float* x, int head_dim) {
  float acc = 0.0f;
  for (int j = 0; j < head_dim; ++j) acc += row[j] * x[j];
  return acc;
}

// Gate blend of one element: g * A_mem + (1 - g) * A_local; g == 0 returns A_local exactly.
EDGEINF_HD float gate_blend(float g, float a_mem, float a_local) {
  return g == 0.0f ? a_local : g * a_mem + (1.0f - g) * a_local;
}

EDGEINF_HD float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

}  // namespace edgeinf::kernels
