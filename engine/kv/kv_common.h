// What the KV stores share: the kernel parameters of RoPE at given positions, cache attention and
// the memory fold and read (every backend's store), and the CPU's K/V row arrays, row encoding and layer steps.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "engine/kv/kv_policy.h"
#include "kernels/common/op_params.h"

namespace edgeinf {

// The K and V rows of every layer, in the bytes of the store's KV type (kernels/common/kv_rows.h),
// allocated once at creation for the store's whole bound and never again: memory the process
// has not written yet is not made resident by the allocation (it is not zeroed), so a session's
// resident bytes follow the rows it has used. bytes() counts the rows in use so far (the
// high-water mark that use() raises), max_bytes() every row.
class KvRowArrays {
 public:
  KvRowArrays(int n_layer, int64_t rows, size_t row_bytes);
  uint8_t* k(int layer) { return base(layer, 0); }
  uint8_t* v(int layer) { return base(layer, 1); }
  const uint8_t* k(int layer) const { return base(layer, 0); }
  const uint8_t* v(int layer) const { return base(layer, 1); }
  // Rows [0, n) are in use (n at most the bound).
  void use(int64_t n);
  size_t bytes() const { return 2 * size_t(n_layer_) * size_t(high_water_) * row_bytes_; }
  size_t max_bytes() const { return 2 * size_t(n_layer_) * size_t(rows_) * row_bytes_; }
  // Every layer's rows [first, last) of K and of V into a snapshot (layer by layer, K then V), and
  // back (marking them used).
  void save(ByteWriter& w, int64_t first, int64_t last) const;
  Status restore(ByteReader& r, int64_t first, int64_t last);

 private:
  uint8_t* base(int layer, int which) const {
    return bytes_.get() + (size_t(layer) * 2 + size_t(which)) * size_t(rows_) * row_bytes_;
  }
  int n_layer_;
  int64_t rows_, high_water_ = 0;
  size_t row_bytes_;
  std::unique_ptr<uint8_t[]> bytes_;  // [n_layer][K, V][rows][row_bytes]
};

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
