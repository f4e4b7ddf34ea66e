// The Llama forward pass, written once for every backend: token embeddings, n_layer blocks of
// pre-norm attention and SwiGLU feed-forward with residuals, then the final norm and output
// projection of the rows whose logits are wanted. A backend supplies the steps on its own buffers
// and weights (Ops, below); the KV policies' attention runs in its attend step.
#pragma once

#include <cstdint>
#include <initializer_list>

#include "engine/model/llama_model.h"

namespace edgeinf {

// Activation buffers of one pass, each [n_tok, width], in the backend's memory: x the residual
// stream [n_embd], xn a normed or projected row [max(n_embd, q_dim)], q/attn [q_dim], k/v [kv_dim],
// gate/up [n_ff].
struct PassBuffers {
  float *x, *xn, *q, *k, *v, *attn, *gate, *up;
};

// What a backend's Ops provides (each step returns Ops::Error; Ops::ok(e) says it succeeded):
//   Error embed(int64_t n)                      the n tokens' embeddings into x
//   const Layer& layer(int il)                  the layer's weights: attn_norm, ffn_norm, wq, wk, wv,
//                                               wo, w_gate, w_up, w_down and the biases bq, bk, bv
//   Bias bias(const B& b)                       a layer bias as a matmul takes it (null: none)
//   Error rmsnorm(const float* x, const N& weight, float* out, int64_t n)
//   Error matmuls(std::initializer_list<Matmul> m, int64_t n)
//                                               out = in W^T (+ bias) for n rows, for each
//                                               {weight, bias, in, out}; several at once share rows
//   Error attend(int il, int64_t n)             the policies' attention from q, k, v into attn
//   Error add(float* x, const float* y, int64_t n)   x += y, n values
//   Error swiglu(float* gate, const float* up, int64_t n)   gate = silu(gate) * up, n rows
//   Error logits(int64_t first, int64_t n_out)  final norm and output projection of x's rows
//                                               [first, first + n_out) into the caller's logits
template <typename Ops>
typename Ops::Error run_llama_pass(Ops& ops, const LlamaConfig& c, const PassBuffers& b, int64_t n, int64_t first) {
  using Matmul = typename Ops::Matmul;
#define EDGEINF_PASS_STEP(expr)            \
  do {                                     \
    const typename Ops::Error e_ = (expr); \
    if (!Ops::ok(e_)) return e_;           \
  } while (0)
  EDGEINF_PASS_STEP(ops.embed(n));
  const int64_t n_residual = n * c.n_embd;
  for (int il = 0; il < c.n_layer; ++il) {
    const auto& l = ops.layer(il);
    EDGEINF_PASS_STEP(ops.rmsnorm(b.x, l.attn_norm, b.xn, n));
    EDGEINF_PASS_STEP(ops.matmuls({Matmul{l.wq, ops.bias(l.bq), b.xn, b.q}, Matmul{l.wk, ops.bias(l.bk), b.xn, b.k},
                                   Matmul{l.wv, ops.bias(l.bv), b.xn, b.v}},
                                  n));
    EDGEINF_PASS_STEP(ops.attend(il, n));
    // x += Wo . attn ; x += W_down . (silu(W_gate . norm(x)) * W_up . norm(x))
    EDGEINF_PASS_STEP(ops.matmuls({Matmul{l.wo, {}, b.attn, b.xn}}, n));
    EDGEINF_PASS_STEP(ops.add(b.x, b.xn, n_residual));
    EDGEINF_PASS_STEP(ops.rmsnorm(b.x, l.ffn_norm, b.xn, n));
    EDGEINF_PASS_STEP(ops.matmuls({Matmul{l.w_gate, {}, b.xn, b.gate}, Matmul{l.w_up, {}, b.xn, b.up}}, n));
    EDGEINF_PASS_STEP(ops.swiglu(b.gate, b.up, n));
    EDGEINF_PASS_STEP(ops.matmuls({Matmul{l.w_down, {}, b.gate, b.xn}}, n));
    EDGEINF_PASS_STEP(ops.add(b.x, b.xn, n_residual));
  }
#undef EDGEINF_PASS_STEP
  return ops.logits(first, n - first);
}

}  // namespace edgeinf
