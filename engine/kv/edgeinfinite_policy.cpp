// EdgeInfinite policy: folding, memory read, local attention and the gate blend.
#include "engine/kv/edgeinfinite_policy.h"

namespace edgeinf {

EdgeInfinitePolicy::EdgeInfinitePolicy(const AttentionShape& s, const KvPolicyOptions& o,
                                       std::unique_ptr<KvStore> store)
    : store_(std::move(store)),
      cache_(s, o.sink, o.window, o.segment, *store_),
      delta_(o.update == MemoryUpdate::kDelta),
      gate_(o.gate) {}

KvStoreShape EdgeInfinitePolicy::store_shape(const KvPolicyOptions& o) {
  return SinkWindowCache::store_shape(o.sink, o.window, o.segment, true, o.gate, o.kv_type);
}

Status EdgeInfinitePolicy::begin_batch(int64_t n_tok) {
  cache_.plan(n_tok);
  return absl::OkStatus();
}

void EdgeInfinitePolicy::fold(int layer, kernels::cpu::ThreadPool& pool) {
  const int64_t n_leaving = cache_.n_leaving();
  if (n_leaving == 0) return;
  cache_.evict(layer, true, pool);
  store_->fold(layer, n_leaving, delta_, pool);
}

bool EdgeInfinitePolicy::attend_parts(const LayerAttention& a, kernels::cpu::ThreadPool& pool) {
  fold(a.layer, pool);
  // Read before the local step rotates q: the memory is position-free (pre-RoPE).
  const bool has_memory = cache_.n_left() + cache_.n_leaving() > 0;
  if (has_memory) store_->read_memory(a.layer, a.q, a.n_tok, pool);
  cache_.attend(a, pool);
  return has_memory;
}

void EdgeInfinitePolicy::attend(const LayerAttention& a, kernels::cpu::ThreadPool& pool) {
  if (gate_ == nullptr) {
    // Gate 0: the memory is kept (so a later gate could use it) but never read.
    fold(a.layer, pool);
    cache_.attend(a, pool);
    return;
  }
  if (attend_parts(a, pool)) store_->blend_memory(a, pool);
}

void EdgeInfinitePolicy::reset() {
  cache_.reset();
  store_->reset();
}

Status EdgeInfinitePolicy::save(ByteWriter& w) const {
  EDGEINF_RETURN_IF_ERROR(cache_.save(w));
  w.put<uint8_t>(delta_ ? 1 : 0);
  return store_->save_memory(w);
}

Status EdgeInfinitePolicy::restore(ByteReader& r) {
  reset();
  Status st = [&]() -> Status {
    EDGEINF_RETURN_IF_ERROR(cache_.restore(r));
    EDGEINF_RETURN_IF_ERROR(r.expect<uint8_t>(delta_ ? 1 : 0, "memory update rule (1 = delta)"));
    return store_->load_memory(r);
  }();
  if (!st.ok()) reset();
  return st;
}

// Delta bytes: the cache's changes, then a flag and, when tokens were folded, the whole memory.
StatusOr<bool> EdgeInfinitePolicy::save_delta(ByteWriter& w) const {
  EDGEINF_ASSIGN_OR_RETURN(const bool cache, cache_.save_delta(w));
  if (!cache) return false;  // it wrote nothing
  const bool folded = cache_.evicted_since_mark();
  w.put<uint8_t>(folded ? 1 : 0);
  if (folded) EDGEINF_RETURN_IF_ERROR(store_->save_memory(w));
  return true;
}

size_t EdgeInfinitePolicy::delta_size() const {
  const size_t cache = cache_.delta_size();
  if (cache == 0) return 0;
  return cache + 1 + (cache_.evicted_since_mark() ? store_->memory_bytes() : 0);
}

Status EdgeInfinitePolicy::apply_delta(ByteReader& r, kernels::cpu::ThreadPool& pool) {
  Status st = [&]() -> Status {
    EDGEINF_RETURN_IF_ERROR(cache_.apply_delta(r, pool));
    uint8_t folded = 0;
    EDGEINF_RETURN_IF_ERROR(r.get(&folded));
    if (folded > 1) return absl::DataLossError(absl::StrCat(r.what(), ": bad memory flag"));
    if (folded == 1) EDGEINF_RETURN_IF_ERROR(store_->load_memory(r));
    return absl::OkStatus();
  }();
  if (!st.ok()) reset();
  return st;
}

StatusOr<std::unique_ptr<KvPolicy>> make_edgeinfinite_policy(const KvPolicyOptions& o, const AttentionShape& s,
                                                             const KvStoreMaker& stores) {
  EDGEINF_ASSIGN_OR_RETURN(std::unique_ptr<KvStore> store, stores(EdgeInfinitePolicy::store_shape(o)));
  return std::unique_ptr<KvPolicy>(std::make_unique<EdgeInfinitePolicy>(s, o, std::move(store)));
}

}  // namespace edgeinf
