// Quantised-weight matrix multiply: each task decodes a panel of weight rows to floats once and
// multiplies it with a block of tokens, so decoding is amortised over the block (prefill) and
// the float panel stays in L1/L2 while it is used.
#include <algorithm>
#include <vector>

#include "kernels/common/check.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/scratch.h"
#include "kernels/cpu/vec.h"

namespace edgeinf::kernels::cpu {
namespace {
constexpr int64_t kPanelRows = kMatmulPanelRows;
constexpr int64_t kTokenBlock = 64;
// Up to this many tokens, rows are decoded in registers for each token instead of into a panel.
constexpr int64_t kMaxGemvTokens = 2;

// Rows per decode task: enough tasks to balance the threads, few enough to amortise scheduling.
int64_t gemv_rows_per_task(const MatmulParams& p, const ThreadPool& pool) {
  const int64_t target_tasks = int64_t(pool.n_threads()) * 8;
  return std::clamp<int64_t>((p.n_out + target_tasks - 1) / target_tasks, 8, 256);
}

// Decode-time rows [r_begin, r_end): weights stream from memory once; each row is dotted with every token.
void gemv_rows(const MatmulParams& p, const VecOps& v, int64_t r_begin, int64_t r_end) {
  for (int64_t r = r_begin; r < r_end; ++r) {
    const auto* w = static_cast<const uint8_t*>(p.w) + r * p.w_row_bytes;
    const float b = p.bias != nullptr ? p.bias[r] : 0.0f;
    for (int64_t t = 0; t < p.n_tok; ++t) {
      p.y[t * p.y_stride + r] = v.dot_row(p.w_type, w, p.x + t * p.x_stride, p.n_in) + b;
    }
  }
}

}  // namespace

void matmul_forward_batch(std::span<const MatmulParams> ps, ThreadPool& pool) {
  const VecOps& v = vec_ops();
  for (const MatmulParams& p : ps) {
    if (p.n_tok > kMaxGemvTokens && !p.per_token) {
      for (const MatmulParams& q : ps) matmul_forward(q, pool);
      return;
    }
  }
  // One task list over all the matrices, so they share a single fork and join.
  int64_t starts[8] = {0};
  int64_t rows_per_task[8] = {0};
  EDGEINF_CHECK(ps.size() <= 7);
  for (size_t i = 0; i < ps.size(); ++i) {
    rows_per_task[i] = gemv_rows_per_task(ps[i], pool);
    starts[i + 1] = starts[i] + (ps[i].n_out + rows_per_task[i] - 1) / rows_per_task[i];
  }
  pool.run(starts[ps.size()], [&](int64_t task) {
    size_t i = 0;
    while (task >= starts[i + 1]) ++i;
    const int64_t r_begin = (task - starts[i]) * rows_per_task[i];
    gemv_rows(ps[i], v, r_begin, std::min(ps[i].n_out, r_begin + rows_per_task[i]));
  });
}

void matmul_forward(const MatmulParams& p, ThreadPool& pool) {
  const VecOps& v = vec_ops();
  if (p.n_tok <= kMaxGemvTokens || p.per_token) {
    const int64_t rows = gemv_rows_per_task(p, pool);
    pool.run((p.n_out + rows - 1) / rows,
             [&](int64_t task) { gemv_rows(p, v, task * rows, std::min(p.n_out, (task + 1) * rows)); });
    return;
  }
  const int64_t n_panels = (p.n_out + kPanelRows - 1) / kPanelRows;
  const int64_t n_blocks = (p.n_tok + kTokenBlock - 1) / kTokenBlock;
  const bool is_f32 = p.w_type == WeightType::kF32;
  pool.run(n_panels * n_blocks, [&](int64_t task) {
    const int64_t block = task / n_panels;
    const int64_t panel = task % n_panels;
    const int64_t r0 = panel * kPanelRows;
    const int64_t n_rows = std::min(kPanelRows, p.n_out - r0);
    const int64_t t0 = block * kTokenBlock;
    const int64_t n_tok = std::min(kTokenBlock, p.n_tok - t0);
    const auto* w_bytes = static_cast<const uint8_t*>(p.w) + r0 * p.w_row_bytes;
    const float* w = reinterpret_cast<const float*>(w_bytes);
    if (!is_f32) {
      float* scratch = fit(thread_scratch().panel, kPanelRows * p.n_in);
      for (int64_t r = 0; r < n_rows; ++r) {
        v.dequantize_row(p.w_type, w_bytes + r * p.w_row_bytes, scratch + r * p.n_in, p.n_in);
      }
      w = scratch;
    }
    float* y = p.y + t0 * p.y_stride + r0;
    v.gemm_panel(p.x + t0 * p.x_stride, p.x_stride, n_tok, w, p.n_in, n_rows, p.n_in, y, p.y_stride);
    if (p.bias != nullptr) {
      for (int64_t t = 0; t < n_tok; ++t) {
        for (int64_t r = 0; r < n_rows; ++r) y[t * p.y_stride + r] += p.bias[r0 + r];
      }
    }
  });
}

}  // namespace edgeinf::kernels::cpu
