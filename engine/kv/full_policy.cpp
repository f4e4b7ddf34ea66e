// FullKV: every token's K and V are kept at its absolute position, up to a fixed capacity.
#include "absl/strings/str_cat.h"
#include "engine/kv/kv_common.h"

namespace edgeinf {
namespace {

class FullPolicy final : public KvPolicy {
 public:
  FullPolicy(const AttentionShape& s, int64_t capacity) : s_(s), capacity_(capacity) {
    k_.assign(size_t(s.n_layer), std::vector<float>(size_t(capacity * s.kv_dim())));
    v_.assign(size_t(s.n_layer), std::vector<float>(size_t(capacity * s.kv_dim())));
  }

  const char* name() const override { return "full"; }
  int64_t max_batch() const override { return capacity_; }
  int64_t capacity() const override { return capacity_; }

  Status begin_batch(int64_t n_tok) override {
    if (n_seen_ + n_tok > capacity_) {
      return absl::OutOfRangeError(absl::StrCat("context is full: ", n_seen_, " + ", n_tok,
                                                " tokens exceed the context size of ", capacity_));
    }
    positions_.resize(size_t(n_tok));
    for (int64_t t = 0; t < n_tok; ++t) positions_[size_t(t)] = int32_t(n_seen_ + t);
    return absl::OkStatus();
  }

  void attend(const LayerAttention& a, kernels::cpu::ThreadPool& pool) override {
    rotate_store_attend(s_, a, positions_.data(), k_[size_t(a.layer)].data(), v_[size_t(a.layer)].data(), n_seen_,
                        pool);
  }

  void end_batch(kernels::cpu::ThreadPool&) override { n_seen_ += int64_t(positions_.size()); }
  void reset() override { n_seen_ = 0; }
  int64_t n_seen() const override { return n_seen_; }
  int64_t n_kept() const override { return n_seen_; }
  int64_t n_compressed() const override { return 0; }
  size_t state_bytes() const override { return 2 * size_t(s_.n_layer) * size_t(capacity_ * s_.kv_dim()) * sizeof(float); }

  Status save(ByteWriter& w) const override {
    w.put<int64_t>(capacity_);
    w.put<int64_t>(n_seen_);
    const size_t n = size_t(n_seen_ * s_.kv_dim());
    for (size_t il = 0; il < k_.size(); ++il) {
      w.put_array(k_[il].data(), n);
      w.put_array(v_[il].data(), n);
    }
    return absl::OkStatus();
  }

  Status restore(ByteReader& r) override {
    n_seen_ = 0;
    EDGEINF_RETURN_IF_ERROR(r.expect<int64_t>(capacity_, "context size"));
    int64_t n_seen = 0;
    EDGEINF_RETURN_IF_ERROR(r.get(&n_seen));
    if (n_seen < 0 || n_seen > capacity_) {
      return absl::DataLossError(absl::StrCat(r.what(), ": ", n_seen, " tokens exceed the context size"));
    }
    const size_t n = size_t(n_seen * s_.kv_dim());
    for (size_t il = 0; il < k_.size(); ++il) {
      EDGEINF_RETURN_IF_ERROR(r.get_array(k_[il].data(), n));
      EDGEINF_RETURN_IF_ERROR(r.get_array(v_[il].data(), n));
    }
    n_seen_ = n_seen;
    return absl::OkStatus();
  }

 private:
  AttentionShape s_;
  int64_t capacity_;
  int64_t n_seen_ = 0;
  std::vector<int32_t> positions_;
  std::vector<std::vector<float>> k_, v_;  // per layer [capacity, n_kv_head * head_dim], rotated K
};

}  // namespace

std::unique_ptr<KvPolicy> make_full_policy(const KvPolicyOptions& o, const AttentionShape& s) {
  return std::make_unique<FullPolicy>(s, o.n_ctx > 0 ? o.n_ctx : s.n_ctx_train);
}

}  // namespace edgeinf
