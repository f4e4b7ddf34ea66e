// Activation gradients of the Llama pass; see backward_ops.h.
#include "engine/calibration/backward_ops.h"

#include <algorithm>
#include <cmath>

#include "engine/kv/kv_common.h"
#include "kernels/common/linear_memory.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/vec.h"

namespace edgeinf {

namespace kc = kernels::cpu;

TransposedWeight TransposedWeight::of(const WeightView& w) {
  TransposedWeight out;
  out.n_in = w.n_in;
  out.n_out = w.n_out;
  out.t.resize(size_t(w.n_in * w.n_out));
  std::vector<float> row(static_cast<size_t>(w.n_in));
  for (int64_t o = 0; o < w.n_out; ++o) {
    kc::vec_ops().dequantize_row(w.type, static_cast<const uint8_t*>(w.data) + o * w.row_bytes, row.data(), w.n_in);
    for (int64_t i = 0; i < w.n_in; ++i) out.t[size_t(i * w.n_out + o)] = row[size_t(i)];
  }
  return out;
}

void matmul_input_grad(const TransposedWeight& w, const float* dy, int64_t n, float* dx, kc::ThreadPool& pool) {
  // Blocks of input columns, each a panel product over every row of dy.
  constexpr int64_t kBlock = 32;
  const int64_t n_blocks = (w.n_in + kBlock - 1) / kBlock;
  pool.run(n_blocks, [&](int64_t b) {
    const int64_t i0 = b * kBlock, cols = std::min(kBlock, w.n_in - i0);
    std::vector<float> part(static_cast<size_t>(n * cols));
    kc::vec_ops().gemm_panel(dy, w.n_out, n, w.t.data() + i0 * w.n_out, w.n_out, cols, w.n_out, part.data(), cols);
    for (int64_t t = 0; t < n; ++t) {
      for (int64_t c = 0; c < cols; ++c) dx[t * w.n_in + i0 + c] += part[size_t(t * cols + c)];
    }
  });
}

void rmsnorm_backward(const float* x, const float* weight, const float* dy, int64_t n, int64_t dim, float eps,
                      float* dx, kc::ThreadPool& pool) {
  pool.run(n, [&](int64_t t) {
    const kc::VecOps& v = kc::vec_ops();
    const float* xr = x + t * dim;
    const float* dyr = dy + t * dim;
    float* dxr = dx + t * dim;
    // y_i = x_i r w_i with r = (mean x^2 + eps)^-1/2: dx_i = r w_i dy_i - x_i r^3 / dim sum_j w_j dy_j x_j.
    const float r = 1.0f / std::sqrt(v.dot(xr, xr, dim) / float(dim) + eps);
    double s = 0;
    for (int64_t i = 0; i < dim; ++i) s += double(weight[i]) * dyr[i] * xr[i];
    const float c = float(s) * r * r * r / float(dim);
    for (int64_t i = 0; i < dim; ++i) dxr[i] += r * weight[i] * dyr[i] - xr[i] * c;
  });
}

void swiglu_backward(const float* g, const float* u, const float* dh, int64_t count, float* dg, float* du) {
  for (int64_t i = 0; i < count; ++i) {
    const float sig = 1.0f / (1.0f + std::exp(-g[i]));
    const float silu = g[i] * sig;
    dg[i] += dh[i] * u[i] * sig * (1.0f + g[i] * (1.0f - sig));
    du[i] += dh[i] * silu;
  }
}

void rope_backward(float* x, const int32_t* positions, int64_t n_tok, int n_head, const AttentionShape& s,
                   kc::ThreadPool& pool) {
  // The transpose of a rotation by an angle is the rotation by its negative.
  std::vector<int32_t> back(positions, positions + n_tok);
  for (int32_t& p : back) p = -p;
  kc::rope_forward(rope_params(s, x, int64_t(n_head) * s.head_dim, n_head, back.data(), n_tok), pool);
}

void attention_backward(const float* q, const float* k, const float* v, const float* o, const float* dout,
                        int64_t n_tok, int64_t n_kv, int64_t causal_base, const AttentionShape& s, float* dq, float* dk,
                        float* dv, kc::ThreadPool& pool) {
  const int64_t hd = s.head_dim, q_dim = s.q_dim(), kv_dim = s.kv_dim();
  const int group = s.n_head / s.n_kv_head;
  const float scale = 1.0f / std::sqrt(float(hd));
  // One task per KV head: it alone writes that head's key and value gradients.
  pool.run(s.n_kv_head, [&](int64_t g) {
    const kc::VecOps& vec = kc::vec_ops();
    std::vector<float> p(static_cast<size_t>(n_kv)), dp(static_cast<size_t>(n_kv));
    for (int64_t t = 0; t < n_tok; ++t) {
      const int64_t keys = std::min(n_kv, causal_base + t + 1);
      for (int hh = 0; hh < group; ++hh) {
        const int64_t h = g * group + hh;
        const float* qr = q + t * q_dim + h * hd;
        const float* dor = dout + t * q_dim + h * hd;
        const float* orow = o + t * q_dim + h * hd;
        float mx = -INFINITY;
        for (int64_t j = 0; j < keys; ++j) {
          p[size_t(j)] = scale * vec.dot(qr, k + j * kv_dim + g * hd, hd);
          mx = std::max(mx, p[size_t(j)]);
        }
        const float sum = vec.exp_sum(p.data(), mx, keys);
        const float inv = 1.0f / sum;
        // ds_j = p_j (do . v_j - do . o)
        const float do_o = vec.dot(dor, orow, hd);
        float* dqr = dq + t * q_dim + h * hd;
        for (int64_t j = 0; j < keys; ++j) {
          p[size_t(j)] *= inv;
          const float ds = p[size_t(j)] * (vec.dot(dor, v + j * kv_dim + g * hd, hd) - do_o);
          vec.axpy(dqr, k + j * kv_dim + g * hd, scale * ds, hd);
          if (j >= causal_base) {
            const int64_t r = j - causal_base;
            vec.axpy(dk + r * kv_dim + g * hd, qr, scale * ds, hd);
            vec.axpy(dv + r * kv_dim + g * hd, dor, p[size_t(j)], hd);
          }
        }
      }
    }
  });
}

void memory_read_backward(const float* q, const float* m, const float* z, const float* a, const float* da,
                          int64_t n_tok, const AttentionShape& s, float* dq, kc::ThreadPool& pool) {
  const int64_t hd = s.head_dim, q_dim = s.q_dim();
  const int group = s.n_head / s.n_kv_head;
  pool.run(n_tok, [&](int64_t t) {
    const kc::VecOps& vec = kc::vec_ops();
    std::vector<float> sq(static_cast<size_t>(hd)), ds(static_cast<size_t>(hd));
    for (int h = 0; h < s.n_head; ++h) {
      const int g = h / group;
      const float* qr = q + t * q_dim + int64_t(h) * hd;
      const float* ar = a + t * q_dim + int64_t(h) * hd;
      const float* dar = da + t * q_dim + int64_t(h) * hd;
      const float* mg = m + int64_t(g) * hd * hd;  // [key i][value j]
      const float* zg = z + int64_t(g) * hd;
      for (int64_t i = 0; i < hd; ++i) sq[size_t(i)] = kernels::elu1(qr[i]);
      const float den = vec.dot(sq.data(), zg, hd) + kernels::kMemoryEps;
      // a_j = (sq . M[:, j]) / den: d sq_i = ((M da)_i - (a . da) z_i) / den.
      const float a_da = vec.dot(ar, dar, hd);
      float* dqr = dq + t * q_dim + int64_t(h) * hd;
      for (int64_t i = 0; i < hd; ++i) {
        const float dsq = (vec.dot(mg + i * hd, dar, hd) - a_da * zg[i]) / den;
        dqr[i] += dsq * (qr[i] > 0.0f ? 1.0f : std::exp(qr[i]));
      }
    }
  });
}

double cross_entropy(const float* logits, const int32_t* targets, int64_t n, int64_t n_vocab, float weight,
                     float* dlogits, kc::ThreadPool& pool) {
  std::vector<double> loss(static_cast<size_t>(n), 0.0);
  pool.run(n, [&](int64_t t) {
    const float* l = logits + t * n_vocab;
    float* d = dlogits + t * n_vocab;
    if (targets[t] < 0) {
      std::fill(d, d + n_vocab, 0.0f);
      return;
    }
    const float mx = *std::max_element(l, l + n_vocab);
    double sum = 0;
    for (int64_t i = 0; i < n_vocab; ++i) sum += std::exp(double(l[i] - mx));
    loss[size_t(t)] = std::log(sum) - double(l[targets[t]] - mx);
    for (int64_t i = 0; i < n_vocab; ++i) d[i] = weight * float(std::exp(double(l[i] - mx)) / sum);
    d[targets[t]] -= weight;
  });
  double total = 0;
  for (double x : loss) total += x;
  return total;
}

}  // namespace edgeinf
