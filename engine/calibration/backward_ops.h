// Gradients of the Llama forward pass with respect to its activations (never its weights, which
// stay frozen), for training the memory gate on the model's own next-token loss. Each function
// takes what the forward step saw and the gradient of what it produced, and adds the gradient of
// its inputs to the output arrays (callers zero them first), so that paths that meet (the
// residual stream, a query read by attention and by the memory) simply accumulate. All fp32,
// threaded over a pool, deterministic for any thread count.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/kv/kv_policy.h"
#include "engine/model/llama_model.h"
#include "kernels/cpu/thread_pool.h"

namespace edgeinf {

// A frozen weight W [n_out, n_in] decoded once to fp32 and stored transposed, [n_in, n_out], so
// that the input gradient dX = dY . W is a product of contiguous rows.
struct TransposedWeight {
  int64_t n_in = 0, n_out = 0;
  std::vector<float> t;  // [n_in, n_out]

  static TransposedWeight of(const WeightView& w);
};

// dx [n, n_in] += dy [n, n_out] . W.
void matmul_input_grad(const TransposedWeight& w, const float* dy, int64_t n, float* dx,
                       kernels::cpu::ThreadPool& pool);

// y = x / rms(x) * weight per row of `dim`: dx += the gradient of dy through it.
void rmsnorm_backward(const float* x, const float* weight, const float* dy, int64_t n, int64_t dim, float eps,
                      float* dx, kernels::cpu::ThreadPool& pool);

// h = silu(g) * u element-wise: dg += dh * u * silu'(g), du += dh * silu(g).
void swiglu_backward(const float* g, const float* u, const float* dh, int64_t count, float* dg, float* du);

// Rotates x [n_tok, n_head * head_dim] back from the RoPE positions it was rotated to (the
// transpose of the rotation, which is the gradient of rotating).
void rope_backward(float* x, const int32_t* positions, int64_t n_tok, int n_head, const AttentionShape& s,
                   kernels::cpu::ThreadPool& pool);

// Softmax attention of rotated queries q [n_tok, n_head * head_dim] over keys and values
// k, v [n_kv, n_kv_head * head_dim] (grouped heads; query t sees keys [0, causal_base + t]),
// scale 1/sqrt(head_dim), forward output o. Adds dq, and the gradients of the keys and values from
// causal_base on (the batch's own: dk, dv [n_tok, n_kv_head * head_dim]); earlier keys are
// constants here.
void attention_backward(const float* q, const float* k, const float* v, const float* o, const float* dout,
                        int64_t n_tok, int64_t n_kv, int64_t causal_base, const AttentionShape& s, float* dq, float* dk,
                        float* dv, kernels::cpu::ThreadPool& pool);

// EdgeInfinite's memory read a = sigma(q) M / (sigma(q) . z + eps) per query head (its KV head's
// M [d, d], z [d]; sigma = ELU + 1) for pre-RoPE queries q [n_tok, n_head * head_dim], with the
// read a: adds dq for da. The memory is a constant (it holds earlier segments).
void memory_read_backward(const float* q, const float* m, const float* z, const float* a, const float* da,
                          int64_t n_tok, const AttentionShape& s, float* dq, kernels::cpu::ThreadPool& pool);

// Cross-entropy of logits [n, n_vocab] against targets (a target < 0 is not scored): returns the
// summed loss (in double) and writes dlogits = (softmax - onehot) * weight for scored rows, 0 for
// the others.
double cross_entropy(const float* logits, const int32_t* targets, int64_t n, int64_t n_vocab, float weight,
                     float* dlogits, kernels::cpu::ThreadPool& pool);

}  // namespace edgeinf
