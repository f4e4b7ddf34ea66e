// Scalar reference implementations of the model ops (clear loops, float accumulators).
#include "kernels/reference/ops.h"

#include <cmath>
#include <vector>

#include "kernels/common/dequant_block.h"
#include "kernels/common/rope.h"
#include "kernels/reference/dequantize.h"

namespace edgeinf::kernels::reference {

void matmul_forward(const MatmulParams& p) {
  std::vector<float> row(static_cast<size_t>(p.n_in));
  for (int64_t o = 0; o < p.n_out; ++o) {
    const auto* w = static_cast<const uint8_t*>(p.w) + o * p.w_row_bytes;
    dequantize_row(p.w_type, w, row.data(), p.n_in);
    for (int64_t t = 0; t < p.n_tok; ++t) {
      const float* x = p.x + t * p.x_stride;
      float acc = 0.0f;
      for (int64_t i = 0; i < p.n_in; ++i) acc += row[size_t(i)] * x[i];
      p.y[t * p.y_stride + o] = acc + (p.bias != nullptr ? p.bias[o] : 0.0f);
    }
  }
}

void rmsnorm_forward(const RmsNormParams& p) {
  for (int64_t t = 0; t < p.n_tok; ++t) {
    const float* x = p.x + t * p.n_embd;
    float* out = p.out + t * p.n_embd;
    float ss = 0.0f;
    for (int64_t i = 0; i < p.n_embd; ++i) ss += x[i] * x[i];
    const float inv = 1.0f / std::sqrt(ss / float(p.n_embd) + p.eps);
    for (int64_t i = 0; i < p.n_embd; ++i) out[i] = x[i] * inv * p.weight[i];
  }
}

void rope_forward(const RopeParams& p) {
  const int half = p.n_rot / 2;
  for (int64_t t = 0; t < p.n_tok; ++t) {
    for (int h = 0; h < p.n_head; ++h) {
      float* x = p.x + t * p.row_stride + int64_t(h) * p.head_dim;
      for (int i = 0; i < half; ++i) {
        const float factor = p.freq_factors != nullptr ? p.freq_factors[i] : 1.0f;
        const float theta = rope_angle(p.positions[t], i, p.n_rot, p.freq_base, p.freq_scale, factor);
        const float c = std::cos(theta), s = std::sin(theta);
        const int a = p.neox ? i : 2 * i;
        const int b = p.neox ? i + half : 2 * i + 1;
        const float x0 = x[a], x1 = x[b];
        x[a] = x0 * c - x1 * s;
        x[b] = x0 * s + x1 * c;
      }
    }
  }
}

void attention_forward(const AttentionParams& p) {
  const int group = p.n_head / p.n_kv_head;
  std::vector<float> scores(static_cast<size_t>(p.n_kv));
  for (int64_t t = 0; t < p.n_tok; ++t) {
    const int64_t n_visible = std::min(p.n_kv, p.causal_base + t + 1);
    for (int h = 0; h < p.n_head; ++h) {
      const float* q = p.q + t * p.q_stride + int64_t(h) * p.head_dim;
      const int64_t kv_off = int64_t(h / group) * p.kv_head_stride;
      float max_score = -INFINITY;
      for (int64_t j = 0; j < n_visible; ++j) {
        const int64_t k = j * p.kv_stride + kv_off;
        float dot = 0.0f;
        for (int d = 0; d < p.head_dim; ++d) dot += q[d] * weight_value(p.kv_type, p.k, k + d);
        scores[size_t(j)] = dot * p.scale;
        max_score = std::max(max_score, scores[size_t(j)]);
      }
      float sum = 0.0f;
      for (int64_t j = 0; j < n_visible; ++j) {
        scores[size_t(j)] = std::exp(scores[size_t(j)] - max_score);
        sum += scores[size_t(j)];
      }
      float* out = p.out + t * p.out_stride + int64_t(h) * p.head_dim;
      for (int d = 0; d < p.head_dim; ++d) out[d] = 0.0f;
      for (int64_t j = 0; j < n_visible; ++j) {
        const int64_t v = j * p.kv_stride + kv_off;
        const float w = scores[size_t(j)] / sum;
        for (int d = 0; d < p.head_dim; ++d) out[d] += w * weight_value(p.kv_type, p.v, v + d);
      }
    }
  }
}

void swiglu_forward(const SwigluParams& p) {
  for (int64_t t = 0; t < p.n_tok; ++t) {
    for (int64_t i = 0; i < p.n_ff; ++i) {
      const float g = p.gate[t * p.stride + i];
      p.out[t * p.stride + i] = g / (1.0f + std::exp(-g)) * p.up[t * p.stride + i];
    }
  }
}

}  // namespace edgeinf::kernels::reference
