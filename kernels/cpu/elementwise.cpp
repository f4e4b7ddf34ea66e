// Row-wise CPU ops: RMSNorm, rotary embedding and the SwiGLU gate, parallel over tokens.
#include <cmath>
#include <vector>

#include "kernels/common/rope.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/scratch.h"
#include "kernels/cpu/vec.h"

namespace edgeinf::kernels::cpu {

void rmsnorm_forward(const RmsNormParams& p, ThreadPool& pool) {
  const VecOps& v = vec_ops();
  pool.run(p.n_tok, [&](int64_t t) {
    const float* x = p.x + t * p.n_embd;
    float* out = p.out + t * p.n_embd;
    const float inv = 1.0f / std::sqrt(v.dot(x, x, p.n_embd) / float(p.n_embd) + p.eps);
    for (int64_t i = 0; i < p.n_embd; ++i) out[i] = x[i] * inv * p.weight[i];
  });
}

void rope_forward(const RopeParams& p, ThreadPool& pool) {
  const int half = p.n_rot / 2;
  pool.run(p.n_tok, [&](int64_t t) {
    float* cs = fit(thread_scratch().rope, 2 * half);
    for (int i = 0; i < half; ++i) {
      const float factor = p.freq_factors != nullptr ? p.freq_factors[i] : 1.0f;
      const float theta = rope_angle(p.positions[t], i, p.n_rot, p.freq_base, p.freq_scale, factor);
      cs[2 * i] = std::cos(theta);
      cs[2 * i + 1] = std::sin(theta);
    }
    for (int h = 0; h < p.n_head; ++h) {
      float* x = p.x + t * p.row_stride + int64_t(h) * p.head_dim;
      for (int i = 0; i < half; ++i) {
        const int a = p.neox ? i : 2 * i;
        const int b = p.neox ? i + half : 2 * i + 1;
        const float c = cs[2 * i], s = cs[2 * i + 1];
        const float x0 = x[a], x1 = x[b];
        x[a] = x0 * c - x1 * s;
        x[b] = x0 * s + x1 * c;
      }
    }
  });
}

void swiglu_forward(const SwigluParams& p, ThreadPool& pool) {
  const VecOps& v = vec_ops();
  pool.run(p.n_tok,
           [&](int64_t t) { v.swiglu(p.gate + t * p.stride, p.up + t * p.stride, p.out + t * p.stride, p.n_ff); });
}

}  // namespace edgeinf::kernels::cpu
