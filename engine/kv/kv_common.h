// What the KV stores share: the kernel parameters of RoPE at given positions, cache attention and
// the memory fold and read (every backend's store), and the CPU's per-layer array growth, snapshot
// loops, row encoding and layer steps.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/kv/kv_policy.h"
#include "kernels/common/op_params.h"

namespace edgeinf {

// Per-layer arrays of K or V rows, in the bytes of the store's KV type (kernels/common/kv_rows.h).
using KvLayers = std::vector<std::vector<uint8_t>>;

// Every layer's bytes [first, last) of K and of V into a snapshot (layer by layer, K then V), and
// back (the arrays must already hold `last` bytes).
void save_kv_layers(ByteWriter& w, const KvLayers& k, const KvLayers& v, size_t first, size_t last);
Status restore_kv_layers(ByteReader& r, KvLayers& k, KvLayers& v, size_t first, size_t last);

// Per-layer arrays that grow with what they hold: makes every layer hold at least n bytes (at
// most max_n), keeping the contents. Growth is geometric (x1.5, in whole rows of `row` bytes), so
// appending costs O(1) amortised and a session's memory follows its tokens up to its bound.
void grow_layers(KvLayers& layers, size_t n, size_t max_n, size_t row);
// Bytes the arrays hold now.
template <typename T>
size_t layers_bytes(const std::vector<std::vector<T>>& layers) {
  size_t n = 0;
  for (const std::vector<T>& l : layers) n += l.size() * sizeof(T);
  return n;
}

// Rows of n values between f32 and a KV type's encoding, one task per row.
void encode_kv_rows(KvType type, const float* src, uint8_t* dst, int64_t n_rows, int64_t n,
                    kernels::cpu::ThreadPool& pool);
void decode_kv_rows(KvType type, const uint8_t* src, float* dst, int64_t n_rows, int64_t n,
                    kernels::cpu::ThreadPool& pool);

// The RoPE step rotating x [n_tok, n_head * head_dim] (row stride `stride`) to `positions`, and
// the attention of a's queries over entries [0, base + a.n_tok) of a token-major cache (causal
// among the batch): the parameters every backend runs.
kernels::RopeParams rope_params(const AttentionShape& s, float* x, int64_t stride, int n_head, const int32_t* positions,
                                int64_t n_tok);
kernels::AttentionParams cache_attention_params(const AttentionShape& s, const LayerAttention& a, KvType type,
                                                const void* k_cache, const void* v_cache, int64_t base);

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
// cache [capacity, n_kv_head * head_dim] of `type`, and writes to a.out the attention of the batch
// over entries [0, base + a.n_tok) (causal among the batch).
void rotate_store_attend(const AttentionShape& s, const LayerAttention& a, const int32_t* positions, KvType type,
                         uint8_t* k_cache, uint8_t* v_cache, int64_t base, kernels::cpu::ThreadPool& pool);

}  // namespace edgeinf
