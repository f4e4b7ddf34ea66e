// The CPU's KV store (kv_store.h): host arrays sized at creation for the store's bound (their
// resident bytes follow the rows in use), kernels::cpu. Nothing is allocated after creation.
#include <algorithm>
#include <cstring>
#include <vector>

#include "engine/kv/kv_common.h"
#include "engine/kv/kv_store.h"
#include "engine/kv/memory_gate.h"
#include "kernels/common/kv_rows.h"
#include "kernels/cpu/ops.h"

namespace edgeinf {
namespace {

// Rows an encoded store re-rotates at once (decoded into f32 scratch, rotated, encoded again).
constexpr int64_t kRerotateRows = 128;

class CpuKvStore final : public KvStore {
 public:
  CpuKvStore(const AttentionShape& s, const KvStoreShape& shape)
      : s_(s),
        shape_(shape),
        row_bytes_(kernels::kv_value_offset(shape.type, s.kv_dim())),
        rows_(s.n_layer, shape.rows, row_bytes_) {
    if (shape.type != KvType::kF32 && shape.segment > 0) {
      rerotate_.resize(size_t(std::min(kRerotateRows, shape.rows) * s.kv_dim()));
    }
    if (!shape.memory) return;
    const size_t d = size_t(s.head_dim), seg = size_t(shape.segment);
    m_.assign(size_t(s.n_layer), std::vector<float>(size_t(s.n_kv_head) * d * d, 0.0f));
    z_.assign(size_t(s.n_layer), std::vector<float>(size_t(s.n_kv_head) * d, 0.0f));
    k_leave_.resize(seg * size_t(s.kv_dim()));
    v_leave_.resize(seg * size_t(s.kv_dim()));
    read_.resize(seg * size_t(s.q_dim()));
    g_.resize(seg * size_t(s.n_head));
    if (shape.gate != nullptr && shape.gate->has_query_projection()) q_mem_.resize(seg * size_t(s.q_dim()));
  }

  const char* device() const override { return "cpu"; }

  void reserve(int64_t n) override { rows_.use(n); }
  size_t row_bytes() const override { return row_bytes_; }
  size_t bytes() const override { return rows_.bytes() + memory_bytes(); }
  size_t max_bytes() const override { return rows_.max_bytes() + memory_bytes(); }
  size_t memory_bytes() const override { return layers_bytes(m_) + layers_bytes(z_); }

  void set_positions(const RowPositions& p) override { positions_ = p; }

  void rotate_store_attend(const LayerAttention& a, int64_t base, kernels::cpu::ThreadPool& pool) override {
    EDGEINF_CHECK(int64_t(positions_.batch.size()) >= a.n_tok);
    edgeinf::rotate_store_attend(s_, a, positions_.batch.data(), shape_.type, rows_.k(a.layer), rows_.v(a.layer), base,
                                 pool);
  }

  void evict(int layer, int64_t first, int64_t n, int64_t end, bool keep, kernels::cpu::ThreadPool& pool) override {
    const int64_t kv_dim = s_.kv_dim(), n_rest = end - first - n;
    const size_t rb = row_bytes_;
    const int32_t* rest = positions_.rest.data();
    EDGEINF_CHECK(n_rest >= 0 && int64_t(positions_.rest.size()) >= n_rest);
    uint8_t* k = rows_.k(layer) + size_t(first) * rb;
    uint8_t* v = rows_.v(layer) + size_t(first) * rb;
    if (keep) {
      EDGEINF_CHECK(shape_.memory && n <= shape_.segment && int64_t(positions_.leaving.size()) >= n);
      decode_kv_rows(shape_.type, k, k_leave_.data(), n, kv_dim, pool);
      rotate(s_, k_leave_.data(), kv_dim, s_.n_kv_head, positions_.leaving.data(), n, pool);
      decode_kv_rows(shape_.type, v, v_leave_.data(), n, kv_dim, pool);
    }
    std::memmove(k, k + size_t(n) * rb, size_t(n_rest) * rb);
    std::memmove(v, v + size_t(n) * rb, size_t(n_rest) * rb);
    if (shape_.type == KvType::kF32) {
      rotate(s_, reinterpret_cast<float*>(k), kv_dim, s_.n_kv_head, rest, n_rest, pool);
      return;
    }
    // Encoded keys: decoded, re-rotated and encoded again, a slice of rows at a time.
    const int64_t step = int64_t(rerotate_.size()) / kv_dim;
    for (int64_t r = 0; r < n_rest; r += step) {
      const int64_t m = std::min(step, n_rest - r);
      uint8_t* rows = k + size_t(r) * rb;
      decode_kv_rows(shape_.type, rows, rerotate_.data(), m, kv_dim, pool);
      rotate(s_, rerotate_.data(), kv_dim, s_.n_kv_head, rest + r, m, pool);
      encode_kv_rows(shape_.type, rerotate_.data(), rows, m, kv_dim, pool);
    }
  }

  void fold(int layer, int64_t n, bool delta, kernels::cpu::ThreadPool& pool) override {
    kernels::cpu::memory_compress(memory_compress_params(s_, m_[size_t(layer)].data(), z_[size_t(layer)].data(),
                                                         k_leave_.data(), v_leave_.data(), n, delta),
                                  pool);
  }

  void read_memory(int layer, const float* q, int64_t n_tok, kernels::cpu::ThreadPool& pool) override {
    if (!q_mem_.empty()) q = shape_.gate->memory_queries(layer, q, n_tok, q_mem_.data(), pool);
    kernels::cpu::memory_decompress(
        memory_decompress_params(s_, m_[size_t(layer)].data(), z_[size_t(layer)].data(), q, read_.data(), n_tok), pool);
  }

  void blend_memory(const LayerAttention& a, kernels::cpu::ThreadPool& pool) override {
    shape_.gate->compute(a.layer, read_.data(), a.out, a.n_tok, g_.data(), pool);
    kernels::GateBlendParams b{g_.data(), read_.data(), a.out, a.out, s_.q_dim(), a.n_tok, s_.n_head, s_.head_dim};
    kernels::cpu::gate_blend_forward(b, pool);
  }

  void reset() override {
    for (auto& m : m_) std::fill(m.begin(), m.end(), 0.0f);
    for (auto& z : z_) std::fill(z.begin(), z.end(), 0.0f);
  }

  Status save_rows(ByteWriter& w, int64_t first, int64_t last) const override {
    rows_.save(w, first, last);
    return absl::OkStatus();
  }
  Status load_rows(ByteReader& r, int64_t first, int64_t last) override { return rows_.restore(r, first, last); }
  Status save_memory(ByteWriter& w) const override {
    for (size_t il = 0; il < m_.size(); ++il) {
      w.put_array(m_[il].data(), m_[il].size());
      w.put_array(z_[il].data(), z_[il].size());
    }
    return absl::OkStatus();
  }
  Status load_memory(ByteReader& r) override {
    for (size_t il = 0; il < m_.size(); ++il) {
      EDGEINF_RETURN_IF_ERROR(r.get_array(m_[il].data(), m_[il].size()));
      EDGEINF_RETURN_IF_ERROR(r.get_array(z_[il].data(), z_[il].size()));
    }
    return absl::OkStatus();
  }

  Status error() const override { return absl::OkStatus(); }
  const float* host_leaving_keys() const override { return k_leave_.data(); }
  const float* host_leaving_values() const override { return v_leave_.data(); }
  const float* host_memory_read() const override { return read_.data(); }
  const float* host_memory_queries() const override { return q_mem_.empty() ? nullptr : q_mem_.data(); }

 private:
  AttentionShape s_;
  KvStoreShape shape_;
  size_t row_bytes_;
  KvRowArrays rows_;                       // per layer K and V [shape_.rows, kv_dim] encoded
  std::vector<std::vector<float>> m_, z_;  // per layer [n_kv_head, d, d] and [n_kv_head, d]
  std::vector<float> k_leave_, v_leave_, read_, g_;
  std::vector<float> q_mem_;     // the projected queries, when the gate projects them
  std::vector<float> rerotate_;  // an encoded store's keys being re-rotated [kRerotateRows, kv_dim]
  RowPositions positions_;       // the batch's, in the policy's buffer (valid until its next plan)
};

}  // namespace

std::unique_ptr<KvStore> make_cpu_kv_store(const AttentionShape& s, const KvStoreShape& shape) {
  return std::make_unique<CpuKvStore>(s, shape);
}

KvStoreMaker cpu_kv_store_maker(const AttentionShape& s) {
  return [s](const KvStoreShape& shape) -> StatusOr<std::unique_ptr<KvStore>> { return make_cpu_kv_store(s, shape); };
}

}  // namespace edgeinf
