// RoPE and attention calls shared by the KV policies.
#include "engine/kv/kv_common.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/common/kv_rows.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/vec.h"

namespace edgeinf {

AttentionShape AttentionShape::of(const LlamaModel& model) {
  const LlamaConfig& c = model.config();
  AttentionShape s;
  s.n_layer = c.n_layer;
  s.n_head = c.n_head;
  s.n_kv_head = c.n_kv_head;
  s.head_dim = c.head_dim;
  s.n_rot = c.n_rot;
  s.n_ctx_train = c.n_ctx_train;
  s.rope_base = c.rope_base;
  s.rope_freq_scale = c.rope_freq_scale;
  s.rope_freq_factors = model.rope_freq_factors();
  s.rope_neox = c.rope_neox;
  return s;
}

KvRowArrays::KvRowArrays(int n_layer, int64_t rows, size_t row_bytes)
    : n_layer_(n_layer),
      rows_(rows),
      row_bytes_(row_bytes),
      // Not zeroed: the allocator's fresh pages stay unbacked until a row is written.
      bytes_(std::make_unique_for_overwrite<uint8_t[]>(2 * size_t(n_layer) * size_t(rows) * row_bytes)) {}

void KvRowArrays::use(int64_t n) {
  EDGEINF_CHECK(n >= 0 && n <= rows_);
  high_water_ = std::max(high_water_, n);
}

void KvRowArrays::save(ByteWriter& w, int64_t first, int64_t last) const {
  EDGEINF_CHECK(first >= 0 && first <= last && last <= high_water_);
  const size_t off = size_t(first) * row_bytes_, n = size_t(last - first) * row_bytes_;
  for (int il = 0; il < n_layer_; ++il) {
    w.put_array(k(il) + off, n);
    w.put_array(v(il) + off, n);
  }
}

Status KvRowArrays::restore(ByteReader& r, int64_t first, int64_t last) {
  EDGEINF_CHECK(first >= 0 && first <= last && last <= rows_);
  use(last);
  const size_t off = size_t(first) * row_bytes_, n = size_t(last - first) * row_bytes_;
  for (int il = 0; il < n_layer_; ++il) {
    EDGEINF_RETURN_IF_ERROR(r.get_array(k(il) + off, n));
    EDGEINF_RETURN_IF_ERROR(r.get_array(v(il) + off, n));
  }
  return absl::OkStatus();
}

void encode_kv_rows(KvType type, const float* src, uint8_t* dst, int64_t n_rows, int64_t n,
                    kernels::cpu::ThreadPool& pool) {
  const size_t row = kernels::kv_value_offset(type, n);
  if (type == KvType::kF32) {
    std::memcpy(dst, src, size_t(n_rows) * row);
    return;
  }
  pool.run(n_rows, [&](int64_t r) { kernels::encode_kv_values(type, src + r * n, dst + size_t(r) * row, n); });
}

void decode_kv_rows(KvType type, const uint8_t* src, float* dst, int64_t n_rows, int64_t n,
                    kernels::cpu::ThreadPool& pool) {
  const size_t row = kernels::kv_value_offset(type, n);
  if (type == KvType::kF32) {
    std::memcpy(dst, src, size_t(n_rows) * row);
    return;
  }
  const kernels::cpu::VecOps& v = kernels::cpu::vec_ops();
  pool.run(n_rows, [&](int64_t r) { v.dequantize_row(type, src + size_t(r) * row, dst + r * n, n); });
}

kernels::RopeParams rope_params(const AttentionShape& s, float* x, int64_t stride, int n_head, const int32_t* positions,
                                int64_t n_tok) {
  kernels::RopeParams r;
  r.x = x;
  r.row_stride = stride;
  r.positions = positions;
  r.n_tok = n_tok;
  r.n_head = n_head;
  r.head_dim = s.head_dim;
  r.n_rot = s.n_rot;
  r.freq_base = s.rope_base;
  r.freq_scale = s.rope_freq_scale;
  r.freq_factors = s.rope_freq_factors;
  r.neox = s.rope_neox;
  return r;
}

kernels::AttentionParams cache_attention_params(const AttentionShape& s, const LayerAttention& a, KvType type,
                                                const void* k_cache, const void* v_cache, int64_t base) {
  const int64_t n_kv = base + a.n_tok;
  kernels::AttentionParams p;
  p.q = a.q;
  p.q_stride = s.q_dim();
  p.k = k_cache;
  p.v = v_cache;
  p.kv_type = type;
  p.kv_stride = s.kv_dim();
  p.kv_head_stride = s.head_dim;
  p.out = a.out;
  p.out_stride = s.q_dim();
  p.n_tok = a.n_tok;
  p.n_kv = n_kv;
  p.causal_base = n_kv - a.n_tok;
  p.n_head = s.n_head;
  p.n_kv_head = s.n_kv_head;
  p.head_dim = s.head_dim;
  p.scale = 1.0f / std::sqrt(float(s.head_dim));
  return p;
}

kernels::MemoryCompressParams memory_compress_params(const AttentionShape& s, float* m, float* z, const float* k,
                                                     const float* v, int64_t n_tok, bool delta) {
  kernels::MemoryCompressParams c;
  c.m = m;
  c.z = z;
  c.k = k;
  c.v = v;
  c.kv_stride = s.kv_dim();
  c.n_tok = n_tok;
  c.n_kv_head = s.n_kv_head;
  c.head_dim = s.head_dim;
  c.delta = delta;
  return c;
}

kernels::MemoryDecompressParams memory_decompress_params(const AttentionShape& s, const float* m, const float* z,
                                                         const float* q, float* a_mem, int64_t n_tok) {
  kernels::MemoryDecompressParams r;
  r.m = m;
  r.z = z;
  r.q = q;
  r.q_stride = s.q_dim();
  r.a_mem = a_mem;
  r.n_tok = n_tok;
  r.n_head = s.n_head;
  r.n_kv_head = s.n_kv_head;
  r.head_dim = s.head_dim;
  return r;
}

void rotate(const AttentionShape& s, float* x, int64_t stride, int n_head, const int32_t* positions, int64_t n_tok,
            kernels::cpu::ThreadPool& pool) {
  kernels::cpu::rope_forward(rope_params(s, x, stride, n_head, positions, n_tok), pool);
}

void rotate_store_attend(const AttentionShape& s, const LayerAttention& a, const int32_t* positions, KvType type,
                         uint8_t* k_cache, uint8_t* v_cache, int64_t base, kernels::cpu::ThreadPool& pool) {
  rotate(s, a.q, s.q_dim(), s.n_head, positions, a.n_tok, pool);
  rotate(s, a.k, s.kv_dim(), s.n_kv_head, positions, a.n_tok, pool);
  const size_t at = kernels::kv_value_offset(type, base * s.kv_dim());
  encode_kv_rows(type, a.k, k_cache + at, a.n_tok, s.kv_dim(), pool);
  encode_kv_rows(type, a.v, v_cache + at, a.n_tok, s.kv_dim(), pool);
  kernels::cpu::attention_forward(cache_attention_params(s, a, type, k_cache, v_cache, base), pool);
}

}  // namespace edgeinf
