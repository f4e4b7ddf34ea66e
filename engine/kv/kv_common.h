// Small helpers shared by the KV policies: RoPE at given positions and attention parameters.
#pragma once

#include <cstdint>

#include "engine/kv/kv_policy.h"
#include "kernels/common/op_params.h"

namespace edgeinf {

// Rotates x [n_tok, n_head * head_dim] (row stride `stride`) in place at `positions`.
void rotate(const AttentionShape& s, float* x, int64_t stride, int n_head, const int32_t* positions, int64_t n_tok,
            kernels::cpu::ThreadPool& pool);

// Attention of a.q over a token-major cache [n_kv, n_kv_head * head_dim] whose last a.n_tok
// entries are the batch itself (causal among them), writing a.out.
void attend_token_major(const AttentionShape& s, const LayerAttention& a, const float* k_cache, const float* v_cache,
                        int64_t n_kv, kernels::cpu::ThreadPool& pool);

}  // namespace edgeinf
