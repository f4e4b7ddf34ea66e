// FullKV: every token's K and V are kept at its absolute position, up to a fixed capacity.
#include "engine/kv/kv_common.h"

namespace edgeinf {
namespace {

class FullPolicy final : public KvPolicy {
 public:
  FullPolicy(const AttentionShape& s, int64_t capacity) : s_(s), c_{capacity} {
    k_.assign(size_t(s.n_layer), std::vector<float>(size_t(capacity * s.kv_dim())));
    v_.assign(size_t(s.n_layer), std::vector<float>(size_t(capacity * s.kv_dim())));
  }

  const char* name() const override { return "full"; }
  int64_t max_batch() const override { return c_.capacity; }
  int64_t capacity() const override { return c_.capacity; }
  Status begin_batch(int64_t n_tok) override { return c_.plan(n_tok); }

  void attend(const LayerAttention& a, kernels::cpu::ThreadPool& pool) override {
    rotate_store_attend(s_, a, c_.positions.data(), k_[size_t(a.layer)].data(), v_[size_t(a.layer)].data(), c_.n_seen,
                        pool);
  }

  void end_batch(kernels::cpu::ThreadPool&) override { c_.commit(); }
  void reset() override { c_.reset(); }
  int64_t n_seen() const override { return c_.n_seen; }
  int64_t n_kept() const override { return c_.n_seen; }
  int64_t n_compressed() const override { return 0; }
  size_t state_bytes() const override {
    return 2 * size_t(s_.n_layer) * size_t(c_.capacity * s_.kv_dim()) * sizeof(float);
  }

  Status save(ByteWriter& w) const override {
    c_.save(w);
    save_kv_layers(w, k_, v_, size_t(c_.n_seen * s_.kv_dim()));
    return absl::OkStatus();
  }

  Status restore(ByteReader& r) override {
    EDGEINF_RETURN_IF_ERROR(c_.restore(r));
    const Status st = restore_kv_layers(r, k_, v_, size_t(c_.n_seen * s_.kv_dim()));
    if (!st.ok()) c_.reset();
    return st;
  }

 private:
  AttentionShape s_;
  FullKvCounters c_;
  std::vector<std::vector<float>> k_, v_;  // per layer [capacity, n_kv_head * head_dim], rotated K
};

}  // namespace

std::unique_ptr<KvPolicy> make_full_policy(const KvPolicyOptions& o, const AttentionShape& s) {
  return std::make_unique<FullPolicy>(s, o.n_ctx > 0 ? o.n_ctx : s.n_ctx_train);
}

}  // namespace edgeinf
