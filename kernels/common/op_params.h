// Parameter structs of the model ops, shared by the reference, CPU and CUDA kernels.
// Shapes are row-major with the last dimension contiguous; strides are in elements.
#pragma once

#include <cstdint>

#include "kernels/common/quant_blocks.h"

namespace edgeinf::kernels {

// y[n_tok, n_out] = x[n_tok, n_in] . W[n_out, n_in]^T, W stored as `w_type` rows of `w_row_bytes`.
struct MatmulParams {
  const void* w = nullptr;
  WeightType w_type = WeightType::kF32;
  int64_t w_row_bytes = 0;
  const float* x = nullptr;
  int64_t x_stride = 0;
  float* y = nullptr;
  int64_t y_stride = 0;
  const float* bias = nullptr;  // [n_out] added to every row, or nullptr
  int64_t n_tok = 0;
  int64_t n_in = 0;
  int64_t n_out = 0;
  // Compute every token's row with the single-token (decode) arithmetic, so a token's result does
  // not depend on what else is in the batch (decode steps of several sessions batched together).
  bool per_token = false;
};

// out[t] = x[t] / rms(x[t]) * weight, over rows of n_embd.
struct RmsNormParams {
  const float* x = nullptr;
  const float* weight = nullptr;
  float* out = nullptr;
  int64_t n_tok = 0;
  int64_t n_embd = 0;
  float eps = 1e-5f;
};

// In-place rotary embedding of x[n_tok, n_head, head_dim] at the given positions.
// Normal mode rotates (x[2i], x[2i+1]); neox mode rotates (x[i], x[i + n_rot/2]).
struct RopeParams {
  float* x = nullptr;
  int64_t row_stride = 0;  // elements between tokens
  const int32_t* positions = nullptr;
  int64_t n_tok = 0;
  int n_head = 0;
  int head_dim = 0;
  int n_rot = 0;  // rotated dimensions (<= head_dim)
  float freq_base = 10000.0f;
  float freq_scale = 1.0f;              // 1 / linear scaling factor
  const float* freq_factors = nullptr;  // [n_rot / 2] divisors, or nullptr
  bool neox = false;
};

// Softmax attention of queries q[n_tok, n_head, head_dim] over n_kv keys/values per KV head, with
// grouped heads (query head h reads KV head g = h / (n_head / n_kv_head)). Key j of head g starts at
// value g * kv_head_stride + j * kv_stride of k: token-major caches use (head_dim, n_kv_head *
// head_dim), head-major ones (capacity * head_dim, head_dim). K and V hold values of kv_type (f32,
// f16 or q8, kv_rows.h; strides count values, head_dim a multiple of the type's block).
// Query t sees keys j <= causal_base + t (causal_base = n_kv - n_tok for a plain causal prefix).
struct AttentionParams {
  const float* q = nullptr;
  int64_t q_stride = 0;
  const void* k = nullptr;
  const void* v = nullptr;
  WeightType kv_type = WeightType::kF32;
  int64_t kv_stride = 0;
  int64_t kv_head_stride = 0;
  float* out = nullptr;
  int64_t out_stride = 0;
  int64_t n_tok = 0;
  int64_t n_kv = 0;
  int64_t causal_base = 0;
  int n_head = 0;
  int n_kv_head = 0;
  int head_dim = 0;
  float scale = 1.0f;
};

// Fold n_tok tokens into the per-KV-head memory: M[g] += sigma(K_g)^T (V_g - R_g), z[g] += sum sigma(K_g),
// where R = 0 (linear rule) or the delta rule's retrieval sigma(K) M / (sigma(K) z) from the memory as
// it was before this call. k and v are pre-RoPE rows [n_tok, n_kv_head * head_dim].
struct MemoryCompressParams {
  float* m = nullptr;  // [n_kv_head, head_dim, head_dim]
  float* z = nullptr;  // [n_kv_head, head_dim]
  const float* k = nullptr;
  const float* v = nullptr;
  int64_t kv_stride = 0;
  int64_t n_tok = 0;
  int n_kv_head = 0;
  int head_dim = 0;
  bool delta = true;
};

// Read the memory for queries q [n_tok, n_head * head_dim] (pre-RoPE):
// a_mem[t, h] = sigma(q[t, h]) M[g] / (sigma(q[t, h]) z[g] + eps), g = h / (n_head / n_kv_head).
struct MemoryDecompressParams {
  const float* m = nullptr;
  const float* z = nullptr;
  const float* q = nullptr;
  int64_t q_stride = 0;
  float* a_mem = nullptr;  // [n_tok, n_head * head_dim], row stride q_stride
  int64_t n_tok = 0;
  int n_head = 0;
  int n_kv_head = 0;
  int head_dim = 0;
};

// The memory read fused with the gate blend (one pass, A_mem never stored):
// out[t, h, :] = g * (sigma(q) M[g] / (sigma(q) z[g] + eps)) + (1 - g) * a_local[t, h, :], g = gate[t, h].
// out may alias a_local.
struct MemoryReadBlendParams {
  const float* m = nullptr;  // [n_kv_head, head_dim, head_dim]
  const float* z = nullptr;  // [n_kv_head, head_dim]
  const float* q = nullptr;  // pre-RoPE queries, row stride q_stride
  int64_t q_stride = 0;
  const float* gate = nullptr;  // [n_tok, n_head]
  const float* a_local = nullptr;
  float* out = nullptr;
  int64_t stride = 0;  // row stride of a_local and out
  int64_t n_tok = 0;
  int n_head = 0;
  int n_kv_head = 0;
  int head_dim = 0;
};

// out[t, h, :] = g[t, h] * a_mem[t, h, :] + (1 - g[t, h]) * a_local[t, h, :]; out may alias a_local.
struct GateBlendParams {
  const float* gate = nullptr;  // [n_tok, n_head]
  const float* a_mem = nullptr;
  const float* a_local = nullptr;
  float* out = nullptr;
  int64_t stride = 0;  // row stride of a_mem, a_local and out
  int64_t n_tok = 0;
  int n_head = 0;
  int head_dim = 0;
};

// The memory's query projection: y[t, h, :] = P[h] x[t, h, :] per query head, P row-major
// [n_head, head_dim (out), head_dim (in)]. y must not alias x.
struct HeadProjectionParams {
  const float* w = nullptr;
  const float* x = nullptr;
  int64_t x_stride = 0;
  float* y = nullptr;
  int64_t y_stride = 0;
  int64_t n_tok = 0;
  int n_head = 0;
  int head_dim = 0;
};

// Linear memory gate values: g[t, h] = sigmoid(W[h] . [a_mem[t]; a_local[t]] + bias[h]), W row-major
// [n_head, 2 * n_head * head_dim] (the a_mem half first).
struct GateLinearParams {
  const float* w = nullptr;
  const float* bias = nullptr;  // [n_head]
  const float* a_mem = nullptr;
  const float* a_local = nullptr;
  int64_t stride = 0;     // row stride of a_mem and a_local
  float* gate = nullptr;  // [n_tok, n_head]
  int64_t n_tok = 0;
  int n_head = 0;
  int head_dim = 0;
};

// Token embeddings: out[t] = row tokens[t] of the weight matrix, decoded to float.
struct EmbedParams {
  const void* w = nullptr;
  WeightType w_type = WeightType::kF32;
  int64_t w_row_bytes = 0;
  const int32_t* tokens = nullptr;  // [n_tok], each < the matrix's rows
  float* out = nullptr;             // [n_tok, n_embd]
  int64_t n_tok = 0;
  int64_t n_embd = 0;
};

// Residual add: y[i] += x[i] for i < n.
struct AddParams {
  float* y = nullptr;
  const float* x = nullptr;
  int64_t n = 0;
};

// out[i] = silu(gate[i]) * up[i] over n_tok rows of n_ff.
struct SwigluParams {
  const float* gate = nullptr;
  const float* up = nullptr;
  float* out = nullptr;
  int64_t stride = 0;
  int64_t n_tok = 0;
  int64_t n_ff = 0;
};

}  // namespace edgeinf::kernels
