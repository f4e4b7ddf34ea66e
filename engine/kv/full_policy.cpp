// FullKV: every token's K and V are kept at its absolute position, up to a fixed capacity. The
// arrays grow with the tokens held; a delta snapshot is the entries appended since the mark.
#include "engine/kv/kv_common.h"

namespace edgeinf {
namespace {

class FullPolicy final : public KvPolicy {
 public:
  FullPolicy(const AttentionShape& s, int64_t capacity) : s_(s), c_{capacity} {
    k_.resize(size_t(s.n_layer));
    v_.resize(size_t(s.n_layer));
  }

  const char* name() const override { return "full"; }
  int64_t max_batch() const override { return c_.capacity; }
  int64_t capacity() const override { return c_.capacity; }
  Status begin_batch(int64_t n_tok) override {
    EDGEINF_RETURN_IF_ERROR(c_.plan(n_tok));
    grow(c_.n_seen + n_tok);
    return absl::OkStatus();
  }

  void attend(const LayerAttention& a, kernels::cpu::ThreadPool& pool) override {
    rotate_store_attend(s_, a, c_.positions.data(), k_[size_t(a.layer)].data(), v_[size_t(a.layer)].data(), c_.n_seen,
                        pool);
  }

  void end_batch(kernels::cpu::ThreadPool&) override { c_.commit(); }
  void reset() override {
    c_.reset();
    mark_saved();
  }
  int64_t n_seen() const override { return c_.n_seen; }
  int64_t n_kept() const override { return c_.n_seen; }
  int64_t n_compressed() const override { return 0; }
  size_t state_bytes() const override { return layers_bytes(k_) + layers_bytes(v_); }
  size_t max_state_bytes() const override {
    return 2 * size_t(s_.n_layer) * size_t(c_.capacity * s_.kv_dim()) * sizeof(float);
  }

  Status save(ByteWriter& w) const override {
    c_.save(w);
    save_kv_layers(w, k_, v_, 0, size_t(c_.n_seen * s_.kv_dim()));
    return absl::OkStatus();
  }

  Status restore(ByteReader& r) override {
    EDGEINF_RETURN_IF_ERROR(c_.restore(r));
    grow(c_.n_seen);
    const Status st = restore_kv_layers(r, k_, v_, 0, size_t(c_.n_seen * s_.kv_dim()));
    if (!st.ok()) c_.reset();
    mark_saved();
    return st;
  }

  bool has_deltas() const override { return true; }
  void mark_saved() override { marked_ = c_.n_seen; }

  // Delta bytes: the marked token count, the counters now, the entries appended since.
  bool save_delta(ByteWriter& w) const override {
    if (marked_ == 0) return false;
    w.put<int64_t>(marked_);
    c_.save(w);
    save_kv_layers(w, k_, v_, size_t(marked_ * s_.kv_dim()), size_t(c_.n_seen * s_.kv_dim()));
    return true;
  }

  size_t delta_size() const override {
    if (marked_ == 0) return 0;
    return sizeof(int64_t) + 2 * sizeof(int64_t) +
           2 * size_t(s_.n_layer) * size_t((c_.n_seen - marked_) * s_.kv_dim()) * sizeof(float);
  }

  Status apply_delta(ByteReader& r, kernels::cpu::ThreadPool&) override {
    Status st = [&]() -> Status {
      int64_t marked = 0;
      EDGEINF_RETURN_IF_ERROR(r.get(&marked));
      if (marked != c_.n_seen) {
        return absl::FailedPreconditionError(
            absl::StrCat(r.what(), ": the changes apply to a state of ", marked, " tokens; this one has ", c_.n_seen));
      }
      FullKvCounters now{c_.capacity};
      EDGEINF_RETURN_IF_ERROR(now.restore(r));
      if (now.n_seen < marked) return absl::DataLossError(absl::StrCat(r.what(), ": the token count went down"));
      grow(now.n_seen);
      EDGEINF_RETURN_IF_ERROR(
          restore_kv_layers(r, k_, v_, size_t(marked * s_.kv_dim()), size_t(now.n_seen * s_.kv_dim())));
      c_.n_seen = now.n_seen;
      return absl::OkStatus();
    }();
    if (!st.ok()) c_.reset();
    mark_saved();
    return st;
  }

 private:
  void grow(int64_t n_tok) {
    const size_t kv_dim = size_t(s_.kv_dim());
    grow_layers(k_, size_t(n_tok) * kv_dim, size_t(c_.capacity) * kv_dim, kv_dim);
    grow_layers(v_, size_t(n_tok) * kv_dim, size_t(c_.capacity) * kv_dim, kv_dim);
  }

  AttentionShape s_;
  FullKvCounters c_;
  int64_t marked_ = 0;                     // tokens held when last marked saved
  std::vector<std::vector<float>> k_, v_;  // per layer [entries, n_kv_head * head_dim], rotated K, growing
};

}  // namespace

std::unique_ptr<KvPolicy> make_full_policy(const KvPolicyOptions& o, const AttentionShape& s) {
  return std::make_unique<FullPolicy>(s, o.n_ctx > 0 ? o.n_ctx : s.n_ctx_train);
}

}  // namespace edgeinf
