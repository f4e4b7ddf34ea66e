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

void save_kv_layers(ByteWriter& w, const KvLayers& k, const KvLayers& v, size_t first, size_t last) {
  for (size_t il = 0; il < k.size(); ++il) {
    w.put_array(k[il].data() + first, last - first);
    w.put_array(v[il].data() + first, last - first);
  }
}

Status restore_kv_layers(ByteReader& r, KvLayers& k, KvLayers& v, size_t first, size_t last) {
  for (size_t il = 0; il < k.size(); ++il) {
    EDGEINF_CHECK(k[il].size() >= last && v[il].size() >= last);
    EDGEINF_RETURN_IF_ERROR(r.get_array(k[il].data() + first, last - first));
    EDGEINF_RETURN_IF_ERROR(r.get_array(v[il].data() + first, last - first));
  }
  return absl::OkStatus();
}

void grow_layers(KvLayers& layers, size_t n, size_t max_n, size_t row) {
  EDGEINF_CHECK(n <= max_n && row > 0);
  for (std::vector<uint8_t>& l : layers) {
    if (l.size() >= n) continue;
    size_t want = std::max(n, l.size() + l.size() / 2);
    want = std::min(max_n, (want + row - 1) / row * row);
    l.reserve(want);  // exactly want: no growth policy of the library on top of ours
    l.resize(want);
  }
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
