// Fitting one layer's memory gate by layer-wise distillation against full attention.
//
// For a token of one layer the gated attention output is A = A_loc + g (.) (A_mem - A_loc), one gate
// value g_h per head, and the full-attention output A_full is the target. The error is measured
// where it enters the residual stream, after the output projection W_o:
//   r(g)  = W_o (A - A_full) = u + sum_h g_h P_h,   u = W_o (A_loc - A_full),
//   P_h   = W_o[:, head h] (A_mem - A_loc)[head h],
//   |r|^2 = c + 2 g.b + g^T G g,   c = |u|^2,  b_h = u.P_h,  G_hk = P_h.P_k.
// A sample is therefore (c, b, G) plus the gate's input [A_mem; A_loc]: the loss and its gradient
// cost O(n_head^2) per token (plus the linear gate's own dot products), whatever the model width.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/kv/memory_gate.h"
#include "kernels/cpu/thread_pool.h"

namespace edgeinf {

// Distillation samples of one layer.
struct GateSamples {
  int n_head = 0;
  int64_t feat_dim = 0;     // gate input width (2 * n_head * head_dim); 0: scalar gates only
  std::vector<float> x;     // [n, feat_dim]   [A_mem; A_loc]
  std::vector<double> c;    // [n]             |u|^2
  std::vector<float> b;     // [n, n_head]
  std::vector<float> gram;  // [n, n_head, n_head]

  GateSamples() = default;
  GateSamples(int heads, int64_t features) : n_head(heads), feat_dim(features) {}
  int64_t size() const { return int64_t(c.size()); }
  // Appends one sample; x may be null when feat_dim is 0.
  void add(double c_t, const float* b_t, const float* gram_t, const float* x_t);
};

// The relative distillation loss sum_t |r_t(g_t)|^2 / sum_t c_t (1 = gate 0, i.e. StreamingLLM) of
// a gate with parameters `bias` [n_head] and, for the linear kind, `weight` [n_head, feat_dim]. When
// grad_bias / grad_weight are not null they receive the loss's gradient. Deterministic: the sum runs
// over fixed chunks in a fixed order, whatever the thread count.
double gate_loss(const GateSamples& s, GateKind kind, const float* bias, const float* weight, float* grad_bias,
                 float* grad_weight, kernels::cpu::ThreadPool& pool);

struct GateFitOptions {
  int steps = 300;             // full-batch Adam steps per stage
  float lr = 0.05f;            // Adam step of the bias; the linear weights' step is lr / mean |x|_1
  float weight_decay = 1e-3f;  // L2 penalty on the linear weights (relative-loss units)
  float init_bias = -3.0f;     // starting logit of the scalar stage (g ~ 0.05)
  int eval_every = 10;         // validation checks, keeping the best parameters seen
};

// The bias of a gate that stays shut (sigmoid(-30) ~ 1e-13).
inline constexpr float kClosedGateBias = -30.0f;

struct GateFitReport {
  double train_scalar = 1, val_scalar = 1;  // relative loss after the scalar stage
  double train = 1, val = 1;                // relative loss of the returned parameters
};

// Fits `bias` (and `weight`, linear kind) of one layer: first a per-head scalar gate from
// init_bias, then, for the linear kind, weights and bias together from that start. With a
// validation set the parameters with the lowest validation loss are returned, or a closed gate
// (kClosedGateBias) when none beats it on the validation set.
GateFitReport fit_gate_layer(const GateSamples& train, const GateSamples* val, GateKind kind, std::vector<float>& bias,
                             std::vector<float>& weight, const GateFitOptions& options, kernels::cpu::ThreadPool& pool);

}  // namespace edgeinf
