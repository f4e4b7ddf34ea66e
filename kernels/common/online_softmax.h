// Online softmax (one pass over keys, as flash attention does it), shared by host and device:
// a running state per query row holds the largest score seen, the sum of exp(score - max) and the
// exp-weighted sum of value rows; states of disjoint key ranges merge exactly, so a kernel can
// split sink ⊕ window ⊕ segment across threads or blocks and combine the parts.
#pragma once

#include <cmath>

#include "kernels/common/hd.h"

namespace edgeinf::kernels {

// The scalar part of the state; the accumulator acc[d] (sum of p * v[d]) lives beside it.
struct OnlineSoftmax {
  float max = -INFINITY;  // largest score so far
  float sum = 0.0f;       // sum of exp(score - max)
};

// Adds one key's score; returns the factor to multiply the existing accumulator by, and writes to
// *p the weight of this key's value row (acc = acc * factor + p * v).
EDGEINF_HD float online_softmax_add(OnlineSoftmax& s, float score, float* p) {
  if (score == -INFINITY) {  // a masked key
    *p = 0.0f;
    return 1.0f;
  }
  if (score <= s.max) {
    *p = expf(score - s.max);
    s.sum += *p;
    return 1.0f;
  }
  const float factor = s.max == -INFINITY ? 0.0f : expf(s.max - score);
  s.sum = s.sum * factor + 1.0f;
  s.max = score;
  *p = 1.0f;
  return factor;
}

// Merges state b into a; returns the factors for a's and b's accumulators:
// acc_a = acc_a * fa + acc_b * fb.
EDGEINF_HD void online_softmax_merge(OnlineSoftmax& a, const OnlineSoftmax& b, float* fa, float* fb) {
  if (b.max == -INFINITY) {
    *fa = 1.0f;
    *fb = 0.0f;
    return;
  }
  if (a.max == -INFINITY) {
    a = b;
    *fa = 0.0f;
    *fb = 1.0f;
    return;
  }
  const float m = a.max > b.max ? a.max : b.max;
  *fa = expf(a.max - m);
  *fb = expf(b.max - m);
  a.sum = a.sum * *fa + b.sum * *fb;
  a.max = m;
}

// The output element from a finished state: acc / sum (0 when no key was seen).
EDGEINF_HD float online_softmax_finish(const OnlineSoftmax& s, float acc) { return s.sum > 0.0f ? acc / s.sum : 0.0f; }

}  // namespace edgeinf::kernels
