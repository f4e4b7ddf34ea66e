// What the KV stores share: the kernel parameters of RoPE at given positions, cache attention and
// the memory fold and read (every backend's store), and the CPU's per-layer array growth, snapshot
// loops and layer steps.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/kv/kv_policy.h"
#include "kernels/common/op_params.h"

namespace edgeinf {

// Every layer's floats [first, last) of K and of V into a snapshot (layer by layer, K then V), and
// back (the arrays must already hold `last` floats).
void save_kv_layers(ByteWriter& w, const std::vector<std::vector<float>>& k, const std::vector<std::vector<float>>& v,
                    size_t first, size_t last);
Status restore_kv_layers(ByteReader& r, std::vector<std::vector<float>>& k, std::vector<std::vector<float>>& v,
                         size_t first, size_t last);

// Per-layer arrays that grow with what they hold: makes every layer hold at least n floats (at
// most max_n), keeping the contents. Growth is geometric (x1.5, in whole rows of `row` floats), so
// appending costs O(1) amortised and a session's memory follows its tokens up to its bound.
void grow_layers(std::vector<std::vector<float>>& layers, size_t n, size_t max_n, size_t row);
// Bytes the arrays hold now.
size_t layers_bytes(const std::vector<std::vector<float>>& layers);

// The RoPE step rotating x [n_tok, n_head * head_dim] (row stride `stride`) to `positions`, and
// the attention of a's queries over entries [0, base + a.n_tok) of a token-major cache (causal
// among the batch): the parameters every backend runs.
kernels::RopeParams rope_params(const AttentionShape& s, float* x, int64_t stride, int n_head, const int32_t* positions,
                                int64_t n_tok);
kernels::AttentionParams cache_attention_params(const AttentionShape& s, const LayerAttention& a, const float* k_cache,
                                                const float* v_cache, int64_t base);

// EdgeInfinite's memory steps on one layer's M [n_kv_head, d, d] and z [n_kv_head, d]: folding
// n_tok pre-RoPE K/V rows, and reading it for n_tok pre-RoPE queries into a_mem.
kernels::MemoryCompressParams memory_compress_params(const AttentionShape& s, float* m, float* z, const float* k,
                                                     const float* v, int64_t n_tok, bool delta);
kernels::MemoryDecompressParams memory_decompress_params(const AttentionShape& s, const float* m, const float* z,
                                                         const float* q, float* a_mem, int64_t n_tok);

// Rotates x [n_tok, n_head * head_dim] (row stride `stride`) in place at `positions`.
void rotate(const AttentionShape& s, float* x, int64_t stride, int n_head, const int32_t* positions, int64_t n_tok,
            kernels::cpu::ThreadPool& pool);

// Rotates a.q and a.k to `positions`, writes the batch's K and V at entry `base` of a token-major
// cache [capacity, n_kv_head * head_dim], and writes to a.out the attention of the batch over
// entries [0, base + a.n_tok) (causal among the batch).
void rotate_store_attend(const AttentionShape& s, const LayerAttention& a, const int32_t* positions, float* k_cache,
                         float* v_cache, int64_t base, kernels::cpu::ThreadPool& pool);

}  // namespace edgeinf
