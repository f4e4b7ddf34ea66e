// FullKV: every token's K and V are kept at its absolute position, up to a fixed capacity. The
// store's rows grow with the tokens held; a delta snapshot is the entries appended since the mark.
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/kv/kv_store.h"

namespace edgeinf {
namespace {

// The counters of a full KV cache (every token at its absolute position up to a capacity): the
// batch plan and their snapshot bytes.
struct FullKvCounters {
  int64_t capacity = 0;
  int64_t n_seen = 0;
  std::vector<int32_t> positions;  // of the planned batch: n_seen, n_seen + 1, ...

  // OutOfRange when n_tok more tokens do not fit; the plan is unchanged then.
  Status plan(int64_t n_tok);
  void commit() { n_seen += int64_t(positions.size()), positions.clear(); }
  void reset() { n_seen = 0, positions.clear(); }
  // The capacity and n_seen; restore checks both (reset on error).
  void save(ByteWriter& w) const;
  Status restore(ByteReader& r);
};

Status FullKvCounters::plan(int64_t n_tok) {
  if (n_seen + n_tok > capacity) {
    return absl::OutOfRangeError(
        absl::StrCat("context is full: ", n_seen, " + ", n_tok, " tokens exceed the context size of ", capacity));
  }
  positions.resize(size_t(n_tok));
  for (int64_t t = 0; t < n_tok; ++t) positions[size_t(t)] = int32_t(n_seen + t);
  return absl::OkStatus();
}

void FullKvCounters::save(ByteWriter& w) const {
  w.put<int64_t>(capacity);
  w.put<int64_t>(n_seen);
}

Status FullKvCounters::restore(ByteReader& r) {
  reset();
  EDGEINF_RETURN_IF_ERROR(r.expect<int64_t>(capacity, "context size"));
  int64_t seen = 0;
  EDGEINF_RETURN_IF_ERROR(r.get(&seen));
  if (seen < 0 || seen > capacity) {
    return absl::DataLossError(absl::StrCat(r.what(), ": ", seen, " tokens exceed the context size"));
  }
  n_seen = seen;
  return absl::OkStatus();
}

class FullPolicy final : public KvPolicy {
 public:
  FullPolicy(const AttentionShape& s, int64_t capacity, std::unique_ptr<KvStore> store)
      : s_(s), c_{capacity}, store_(std::move(store)) {}

  const char* name() const override { return "full"; }
  int64_t max_batch() const override { return c_.capacity; }
  StepShape step_shape() const override { return {c_.capacity, 0}; }
  int64_t capacity() const override { return c_.capacity; }
  Status begin_batch(int64_t n_tok) override {
    EDGEINF_RETURN_IF_ERROR(c_.plan(n_tok));
    store_->reserve(c_.n_seen + n_tok);
    store_->set_positions(RowPositions{c_.positions, {}, {}});
    return absl::OkStatus();
  }

  void attend(const LayerAttention& a, kernels::cpu::ThreadPool& pool) override {
    store_->rotate_store_attend(a, c_.n_seen, pool);
  }

  void end_batch(kernels::cpu::ThreadPool&) override { c_.commit(); }
  void reset() override {
    c_.reset();
    store_->reset();
    mark_saved();
  }
  int64_t n_seen() const override { return c_.n_seen; }
  int64_t n_kept() const override { return c_.n_seen; }
  int64_t n_compressed() const override { return 0; }
  size_t state_bytes() const override { return store_->bytes(); }
  size_t max_state_bytes() const override { return store_->max_bytes(); }

  Status save(ByteWriter& w) const override {
    c_.save(w);
    return store_->save_rows(w, 0, c_.n_seen);
  }

  Status restore(ByteReader& r) override {
    EDGEINF_RETURN_IF_ERROR(c_.restore(r));
    const Status st = store_->load_rows(r, 0, c_.n_seen);
    if (!st.ok()) c_.reset();
    mark_saved();
    return st;
  }

  bool has_deltas() const override { return true; }
  void mark_saved() override { marked_ = c_.n_seen; }

  // Delta bytes: the marked token count, the counters now, the entries appended since.
  StatusOr<bool> save_delta(ByteWriter& w) const override {
    if (marked_ == 0) return false;
    w.put<int64_t>(marked_);
    c_.save(w);
    EDGEINF_RETURN_IF_ERROR(store_->save_rows(w, marked_, c_.n_seen));
    return true;
  }

  size_t delta_size() const override {
    if (marked_ == 0) return 0;
    return sizeof(int64_t) + 2 * sizeof(int64_t) +
           2 * size_t(s_.n_layer) * size_t(c_.n_seen - marked_) * store_->row_bytes();
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
      EDGEINF_RETURN_IF_ERROR(store_->load_rows(r, marked, now.n_seen));
      c_.n_seen = now.n_seen;
      return absl::OkStatus();
    }();
    if (!st.ok()) c_.reset();
    mark_saved();
    return st;
  }

  const KvStore* store() const override { return store_.get(); }

 private:
  AttentionShape s_;
  FullKvCounters c_;
  std::unique_ptr<KvStore> store_;  // rows: tokens at their absolute positions, rotated K
  int64_t marked_ = 0;              // tokens held when last marked saved
};

}  // namespace

StatusOr<std::unique_ptr<KvPolicy>> make_full_policy(const KvPolicyOptions& o, const AttentionShape& s,
                                                     const KvStoreMaker& stores) {
  const int64_t capacity = o.n_ctx > 0 ? o.n_ctx : s.n_ctx_train;
  EDGEINF_ASSIGN_OR_RETURN(std::unique_ptr<KvStore> store,
                           stores(KvStoreShape{capacity, 0, false, nullptr, o.kv_type}));
  return std::unique_ptr<KvPolicy>(std::make_unique<FullPolicy>(s, capacity, std::move(store)));
}

}  // namespace edgeinf
