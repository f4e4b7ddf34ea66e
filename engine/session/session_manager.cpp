// Sessions in memory and in the store; see session_manager.h.
#include "engine/session/session_manager.h"

#include <malloc.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <random>

#include "absl/strings/str_cat.h"

namespace edgeinf {
namespace {

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

uint64_t random_token() {
  std::random_device rd;
  return (uint64_t(rd()) << 32) ^ rd();
}

Status session_not_found(const std::string& id) {
  return absl::NotFoundError(absl::StrCat("session ", quoted_name(id), " not found"));
}

}  // namespace

struct Session {
  std::string key;
  KvPolicyOptions kv;
  SessionMeta meta;                   // as committed to the store
  std::unique_ptr<LlamaContext> ctx;  // null while only in the store
  bool busy = false;                  // a turn holds it
  size_t charge = 0;                  // what ctx counts against the budget (busy: its bound)
  std::list<Session*>::iterator lru;  // position among idle sessions with a context
  bool in_lru = false;
  // The records in the store: the last full one's size, and the deltas since.
  size_t full_bytes = 0, delta_bytes = 0;
  int n_deltas = 0;
};

IoMemory::Hold& IoMemory::Hold::operator=(Hold&& o) noexcept {
  if (this != &o) {
    release();
    owner_ = o.owner_;
    bytes_ = o.bytes_;
    o.owner_ = nullptr;
  }
  return *this;
}

void IoMemory::Hold::release() {
  if (owner_ != nullptr) owner_->give_back(bytes_);
  owner_ = nullptr;
}

IoMemory::Hold IoMemory::reserve(size_t bytes) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return used_ == 0 || used_ + bytes <= limit_; });
  used_ += bytes;
  return Hold(this, bytes);
}

std::optional<IoMemory::Hold> IoMemory::try_reserve(size_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  if (used_ != 0 && used_ + bytes > limit_) return std::nullopt;
  used_ += bytes;
  return Hold(this, bytes);
}

size_t IoMemory::in_use() {
  std::lock_guard<std::mutex> lock(mu_);
  return used_;
}

void IoMemory::give_back(size_t bytes) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    used_ -= bytes;
  }
  cv_.notify_all();
}

SessionManager::SessionManager(const SessionManagerConfig& config, std::unique_ptr<SessionStore> store,
                               ContextMaker maker)
    : config_(config), store_(std::move(store)), maker_(std::move(maker)), io_(config.io_bytes) {}

size_t SessionManager::bound_of(const KvPolicyOptions& kv) {
  const std::string name = absl::StrCat(kv.name, "/", kv.n_ctx, "/", kv.sink, "/", kv.window, "/", kv.segment, "/",
                                        kv.budget, "/", kv.obs_window, "/", kv_type_name(kv.kv_type));
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = bounds_.find(name); it != bounds_.end()) return it->second;
  }
  auto policy = maker_.make_policy(kv);
  const size_t bound = policy.ok() ? (*policy)->max_state_bytes() : 0;
  std::lock_guard<std::mutex> lock(mu_);
  bounds_[name] = bound;
  return bound;
}

IoMemory::Hold SessionManager::reserve_chain(const KvPolicyOptions& kv) {
  return io_.reserve(2 * bound_of(kv) * size_t(store_->record_copies()) + (1 << 20));
}

SessionManager::~SessionManager() = default;

void SessionManager::count(const LlamaContext& ctx, const std::string& policy, SessionMeta* m) {
  const KvPolicy& p = ctx.policy();
  m->total = p.n_seen() + (m->pending >= 0 ? 1 : 0);
  m->exact = p.n_kept();
  const KvPolicyTraits& traits = kv_policy_traits(policy);
  m->compressed = traits.compresses ? p.n_compressed() : 0;
  m->dropped = traits.drops() ? p.n_compressed() : 0;
  m->state_bytes = int64_t(p.state_bytes());
}

SessionInfo SessionManager::info_of(const KvPolicyOptions& kv, const SessionMeta& m, const std::string& fingerprint) {
  SessionInfo i;
  i.id = m.id;
  i.kv = kv;
  i.total_tokens = m.total;
  i.exact_tokens = m.exact;
  i.compressed_tokens = m.compressed;
  i.dropped_tokens = m.dropped;
  i.state_bytes = m.state_bytes;
  i.create_time = m.create_time;
  i.update_time = m.update_time;
  i.etag = etag_of(m.version);
  i.model_fingerprint = fingerprint;
  return i;
}

Status SessionManager::damaged(const std::string& key, const Status& st) {
  if (st.code() != absl::StatusCode::kDataLoss) return st;
  bool first = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    first = damage_logged_.insert(absl::StrCat(key, " ", st.message())).second;
  }
  if (first) spdlog::error("session store: session {} is damaged: {}", key, std::string(st.message()));
  return absl::DataLossError(absl::StrCat("the stored session is damaged (", st.message(), ")"));
}

// ---- reading --------------------------------------------------------------------------------------

StatusOr<SessionMeta> SessionManager::read_owned_head(const std::string& key, const std::string& tenant,
                                                      const std::string& id, KvPolicyOptions* kv, uint64_t* version,
                                                      std::string* fingerprint) {
  EDGEINF_ASSIGN_OR_RETURN(std::optional<StoredRecord> head, store_->read_head(key));
  if (!head) return session_not_found(id);
  auto view = read_snapshot_head(head->bytes);
  if (!view.ok()) return damaged(key, view.status());
  SessionMeta m;
  if (Status st = decode_meta(view->session_meta, &m); !st.ok()) return damaged(key, st);
  // Another tenant's session is NotFound, never an error that would confirm it exists.
  if (m.tenant != tenant || m.id != id) return session_not_found(id);
  if (m.version != head->version) {
    return damaged(key, absl::DataLossError(
                            absl::StrCat("version ", head->version, " holds the metadata of version ", m.version)));
  }
  *kv = view->header.kv;
  *version = head->version;
  if (fingerprint != nullptr) *fingerprint = view->header.model_fingerprint;
  return m;
}

StatusOr<std::vector<StoredRecord>> SessionManager::read_chain(const std::string& key, const std::string& tenant,
                                                               const std::string& id) {
  EDGEINF_ASSIGN_OR_RETURN(std::optional<std::vector<StoredRecord>> records, store_->read(key));
  if (!records || records->empty()) return session_not_found(id);
  for (size_t i = 0; i < records->size(); ++i) {
    const StoredRecord& rec = (*records)[i];
    auto view = read_snapshot(rec.bytes);
    if (!view.ok()) return damaged(key, view.status());
    if (view->is_delta != (i > 0)) {
      return damaged(key, absl::DataLossError(absl::StrCat("version ", rec.version, " is a ",
                                                           view->is_delta ? "delta" : "full", " record out of place")));
    }
    SessionMeta m;
    if (Status st = decode_meta(view->session_meta, &m); !st.ok()) return damaged(key, st);
    if (m.tenant != tenant || m.id != id) return session_not_found(id);
    if (m.version != rec.version) {
      return damaged(key, absl::DataLossError(
                              absl::StrCat("version ", rec.version, " holds the metadata of version ", m.version)));
    }
  }
  return std::move(*records);
}

Status SessionManager::replay(const std::vector<StoredRecord>& chain, KvPolicy& policy) {
  std::vector<SnapshotView> views;
  for (const StoredRecord& rec : chain) {
    EDGEINF_ASSIGN_OR_RETURN(SnapshotView v, read_snapshot(rec.bytes));
    views.push_back(v);
  }
  const KvPolicyOptions& kv = views[0].header.kv;
  for (const SnapshotView& v : views) EDGEINF_RETURN_IF_ERROR(check_compatible(maker_.header(kv), v.header));
  auto apply_all = [&](KvPolicy& p) -> Status {
    ByteReader r(views[0].policy_state, "session snapshot state");
    EDGEINF_RETURN_IF_ERROR(p.restore(r));
    for (size_t i = 1; i < views.size(); ++i) {
      ByteReader d(views[i].policy_delta, absl::StrCat("session record ", chain[i].version));
      EDGEINF_RETURN_IF_ERROR(p.apply_delta(d, *maker_.pool));
    }
    return absl::OkStatus();
  };
  if (views.size() == 1) return apply_all(policy);
  // A policy without deltas (a device's) gets the state rebuilt by a CPU policy of the same shape.
  if (policy.has_deltas()) return apply_all(policy);
  EDGEINF_ASSIGN_OR_RETURN(std::unique_ptr<KvPolicy> cpu, maker_.make_policy(kv));
  EDGEINF_RETURN_IF_ERROR(apply_all(*cpu));
  std::string state;
  ByteWriter w(&state);
  EDGEINF_RETURN_IF_ERROR(cpu->save(w));
  ByteReader r(state, "session state");
  return policy.restore(r);
}

StatusOr<SessionInfo> SessionManager::get(const std::string& tenant, const std::string& id) {
  if (!valid_session_id(id)) return session_not_found(id);
  const std::string key = session_key(tenant, id);
  KvPolicyOptions kv;
  uint64_t version = 0;
  EDGEINF_RETURN_IF_ERROR(read_owned_head(key, tenant, id, &kv, &version, nullptr).status());
  const IoMemory::Hold hold = reserve_chain(kv);
  EDGEINF_ASSIGN_OR_RETURN(std::vector<StoredRecord> chain, read_chain(key, tenant, id));
  EDGEINF_ASSIGN_OR_RETURN(SnapshotView last, read_snapshot(chain.back().bytes));
  SessionMeta m;
  EDGEINF_RETURN_IF_ERROR(decode_meta(last.session_meta, &m));
  return info_of(last.header.kv, m, last.header.model_fingerprint);
}

StatusOr<std::vector<SessionInfo>> SessionManager::list(const std::string& tenant) {
  EDGEINF_ASSIGN_OR_RETURN(std::vector<std::string> keys, store_->list(session_key(tenant, "")));
  std::vector<SessionInfo> out;
  for (const std::string& key : keys) {
    const std::string id = key.substr(key.find('/') + 1);
    if (!valid_session_id(id)) continue;
    KvPolicyOptions kv;
    uint64_t version = 0;
    std::string fingerprint;
    auto m = read_owned_head(key, tenant, id, &kv, &version, &fingerprint);
    if (m.ok()) {
      out.push_back(info_of(kv, *m, fingerprint));
    } else if (m.status().code() == absl::StatusCode::kDataLoss) {
      SessionInfo info;
      info.id = id;
      info.damage = std::string(m.status().message());
      out.push_back(std::move(info));
    } else if (m.status().code() != absl::StatusCode::kNotFound) {
      return m.status();  // the store failed; a session removed meanwhile is skipped
    }
  }
  return out;
}

StatusOr<std::string> SessionManager::export_snapshot(const std::string& tenant, const std::string& id,
                                                      IoMemory::Hold* hold) {
  if (!valid_session_id(id)) return session_not_found(id);
  const std::string key = session_key(tenant, id);
  KvPolicyOptions kv;
  uint64_t version = 0;
  EDGEINF_RETURN_IF_ERROR(read_owned_head(key, tenant, id, &kv, &version, nullptr).status());
  // The chain, then the rebuilt state and its snapshot: the chain's allowance plus one bound.
  *hold = io_.reserve(2 * bound_of(kv) * size_t(store_->record_copies()) + 2 * bound_of(kv) + (1 << 20));
  EDGEINF_ASSIGN_OR_RETURN(std::vector<StoredRecord> chain, read_chain(key, tenant, id));
  if (chain.size() == 1) return std::move(chain[0].bytes);
  EDGEINF_ASSIGN_OR_RETURN(SnapshotView last, read_snapshot(chain.back().bytes));
  EDGEINF_ASSIGN_OR_RETURN(std::unique_ptr<KvPolicy> policy, maker_.make_policy(last.header.kv));
  EDGEINF_RETURN_IF_ERROR(replay(chain, *policy));
  return write_snapshot(last.header, last.session_meta, *policy);
}

// ---- writing --------------------------------------------------------------------------------------

Status SessionManager::commit_record(const std::string& key, SessionMeta& m, const KvPolicyOptions& kv,
                                     const KvPolicy& policy, bool full, Session* s, bool reserve_io) {
  m.commit_token = random_token();
  const SnapshotHeader header = maker_.header(kv);
  const std::string meta = encode_meta(m);
  if (!full) {
    // Compact when there is no delta, or when the deltas since the last full record would
    // outweigh it.
    const size_t delta = policy.delta_size();
    full = delta == 0 || (s != nullptr && s->delta_bytes + delta > s->full_bytes);
  }
  const size_t estimate = (full ? policy.state_bytes() : policy.delta_size()) + meta.size() + 4096;
  const IoMemory::Hold hold = reserve_io ? io_.reserve(estimate * size_t(store_->record_copies())) : IoMemory::Hold();
  std::optional<std::string> record;
  if (!full) {
    record = write_snapshot_delta(header, meta, policy);
    full = !record;
  }
  if (full) {
    EDGEINF_ASSIGN_OR_RETURN(std::string bytes, write_snapshot(header, meta, policy));
    record = std::move(bytes);
  }
  CommitRequest req;
  req.version = m.version;
  req.full = full;
  req.record = *record;
  req.head = snapshot_head(*record);
  req.token = absl::StrCat(absl::Hex(m.commit_token, absl::kZeroPad16));
  EDGEINF_RETURN_IF_ERROR(store_->commit(key, req));
  std::lock_guard<std::mutex> lock(mu_);
  (full ? totals_.full_commits : totals_.delta_commits) += 1;
  (full ? totals_.full_bytes : totals_.delta_bytes) += int64_t(record->size());
  if (s != nullptr) {
    if (full) {
      s->full_bytes = record->size();
      s->delta_bytes = 0;
      s->n_deltas = 0;
    } else {
      s->delta_bytes += record->size();
      s->n_deltas += 1;
    }
  }
  return absl::OkStatus();
}

StatusOr<SessionInfo> SessionManager::create(const std::string& tenant, const KvPolicyOptions& kv) {
  EDGEINF_ASSIGN_OR_RETURN(std::unique_ptr<KvPolicy> policy, maker_.make_policy(kv));  // validates kv
  if (config_.fixed_bytes + policy->max_state_bytes() > config_.memory_budget_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a session of this shape can hold ", policy->max_state_bytes() >> 20, " MiB of state, more than the server's ",
        "memory budget leaves (",
        (config_.memory_budget_bytes - std::min(config_.memory_budget_bytes, config_.fixed_bytes)) >> 20, " MiB)"));
  }
  EDGEINF_ASSIGN_OR_RETURN(std::vector<std::string> keys, store_->list(session_key(tenant, "")));
  if (int64_t(keys.size()) >= config_.max_sessions_per_tenant) {
    return absl::ResourceExhaustedError(
        absl::StrCat("this tenant has ", keys.size(), " sessions, the limit is ", config_.max_sessions_per_tenant));
  }
  SessionMeta m;
  m.id = random_session_id();
  m.tenant = tenant;
  m.create_time = m.update_time = unix_now();
  m.version = 1;
  m.state_bytes = int64_t(policy->state_bytes());
  EDGEINF_RETURN_IF_ERROR(commit_record(session_key(tenant, m.id), m, kv, *policy, true, nullptr, true));
  return info_of(kv, m, maker_.header(kv).model_fingerprint);
}

StatusOr<SessionInfo> SessionManager::import_snapshot(const std::string& tenant, std::string_view snapshot) {
  EDGEINF_ASSIGN_OR_RETURN(SnapshotView v, read_snapshot(snapshot));
  if (v.is_delta) return absl::InvalidArgumentError("a delta record is not a session snapshot; export one");
  EDGEINF_RETURN_IF_ERROR(check_compatible(maker_.header(v.header.kv), v.header));
  SessionMeta m;
  EDGEINF_RETURN_IF_ERROR(decode_meta(v.session_meta, &m));
  EDGEINF_ASSIGN_OR_RETURN(std::unique_ptr<KvPolicy> policy, maker_.make_policy(v.header.kv));
  ByteReader r(v.policy_state, "session snapshot state");
  EDGEINF_RETURN_IF_ERROR(policy->restore(r));
  EDGEINF_ASSIGN_OR_RETURN(std::vector<std::string> keys, store_->list(session_key(tenant, "")));
  if (int64_t(keys.size()) >= config_.max_sessions_per_tenant) {
    return absl::ResourceExhaustedError(
        absl::StrCat("this tenant has ", keys.size(), " sessions, the limit is ", config_.max_sessions_per_tenant));
  }
  // A new session of the importing tenant: a new id and history (the creation time is kept).
  m.id = random_session_id();
  m.tenant = tenant;
  m.update_time = unix_now();
  m.version = 1;
  // The caller's I/O memory already covers the snapshot, its state and the record made of them.
  EDGEINF_RETURN_IF_ERROR(
      commit_record(session_key(tenant, m.id), m, v.header.kv, *policy, true, nullptr, /*reserve_io=*/false));
  return info_of(v.header.kv, m, v.header.model_fingerprint);
}

Status SessionManager::remove(const std::string& tenant, const std::string& id) {
  if (!valid_session_id(id)) return session_not_found(id);
  const std::string key = session_key(tenant, id);
  KvPolicyOptions kv;
  uint64_t version = 0;
  // The key is the tenant's own; a session whose head is damaged can still be removed.
  auto m = read_owned_head(key, tenant, id, &kv, &version, nullptr);
  if (!m.ok() && m.status().code() != absl::StatusCode::kDataLoss) return m.status();
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sessions_.find(key);
    if (it != sessions_.end()) {
      if (it->second->busy) return absl::AbortedError("a turn is running on this session; retry when it ends");
      drop_context(*it->second);
      sessions_.erase(it);
    }
  }
  trim_heap();
  return store_->remove(key);
}

// ---- turns ----------------------------------------------------------------------------------------

StatusOr<SessionLease> SessionManager::acquire(const std::string& tenant, const std::string& id,
                                               const std::string& etag) {
  if (!valid_session_id(id)) return session_not_found(id);
  const std::string key = session_key(tenant, id);
  Session* s = nullptr;
  {
    // A turn that is ending (cancelled, committing) lets go in a moment: wait that long for it.
    std::unique_lock<std::mutex> lock(mu_);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(config_.busy_wait_ms);
    for (;;) {
      auto it = sessions_.find(key);
      if (it == sessions_.end() || !it->second->busy) break;
      if (released_.wait_until(lock, deadline) == std::cv_status::timeout) {
        it = sessions_.find(key);
        if (it != sessions_.end() && it->second->busy) {
          return absl::AbortedError("a turn is already running on this session");
        }
      }
    }
    auto& slot = sessions_[key];
    if (slot == nullptr) {
      slot = std::make_unique<Session>();
      slot->key = key;
    }
    s = slot.get();
    s->busy = true;
    if (s->in_lru) {
      lru_.erase(s->lru);
      s->in_lru = false;
      idle_bytes_ -= s->charge;
    }
  }
  SessionLease lease;
  lease.session = s;
  Status st = [&]() -> Status {
    KvPolicyOptions kv;
    uint64_t version = 0;
    EDGEINF_RETURN_IF_ERROR(read_owned_head(key, tenant, id, &kv, &version, nullptr).status());
    if (!etag.empty() && etag != etag_of(version)) {
      return absl::AbortedError("the session changed since that etag; read it again");
    }
    if (s->ctx != nullptr && s->meta.version == version) {
      // Current: reserve its bound (it may grow during the turn).
      std::lock_guard<std::mutex> lock(mu_);
      const size_t bound = s->ctx->max_state_bytes();
      charged_ -= s->charge;
      s->charge = 0;
      if (!make_room(bound)) {
        s->charge = s->ctx->state_bytes();
        charged_ += s->charge;
        return absl::ResourceExhaustedError(kNoRoom);
      }
      s->charge = bound;
      charged_ += bound;
      return absl::OkStatus();
    }
    // Another replica moved it on, or it is not in memory: read the records.
    {
      std::lock_guard<std::mutex> lock(mu_);
      drop_context(*s);
    }
    const IoMemory::Hold hold = reserve_chain(kv);
    EDGEINF_ASSIGN_OR_RETURN(std::vector<StoredRecord> chain, read_chain(key, tenant, id));
    EDGEINF_ASSIGN_OR_RETURN(SnapshotView last, read_snapshot(chain.back().bytes));
    SessionMeta m;
    EDGEINF_RETURN_IF_ERROR(decode_meta(last.session_meta, &m));
    EDGEINF_ASSIGN_OR_RETURN(std::unique_ptr<LlamaContext> ctx, maker_.make(last.header.kv));
    {
      std::lock_guard<std::mutex> lock(mu_);
      const size_t bound = ctx->max_state_bytes();
      if (!make_room(bound)) return absl::ResourceExhaustedError(kNoRoom);
      s->charge = bound;
      charged_ += bound;
      s->ctx = std::move(ctx);
    }
    if (Status rs = replay(chain, s->ctx->policy()); !rs.ok()) return damaged(key, rs);
    s->kv = last.header.kv;
    s->meta = m;
    s->full_bytes = chain[0].bytes.size();
    s->delta_bytes = 0;
    for (size_t i = 1; i < chain.size(); ++i) s->delta_bytes += chain[i].bytes.size();
    s->n_deltas = int(chain.size()) - 1;
    return absl::OkStatus();
  }();
  if (!st.ok()) {
    release(lease, st.code() == absl::StatusCode::kResourceExhausted || st.code() == absl::StatusCode::kAborted);
    return st;
  }
  lease.ctx = s->ctx.get();
  lease.kv = s->kv;
  lease.meta = s->meta;
  return lease;
}

Status SessionManager::commit(SessionLease& lease, const TurnCommit& turn) {
  Session* s = lease.session;
  EDGEINF_CHECK(s != nullptr && s->busy && s->ctx != nullptr);
  SessionMeta m = s->meta;
  m.version += 1;
  m.pending = turn.pending;
  m.recent = turn.recent;
  m.update_time = unix_now();
  count(*s->ctx, s->kv.name, &m);
  const bool full = s->n_deltas >= config_.max_deltas;
  EDGEINF_RETURN_IF_ERROR(commit_record(s->key, m, s->kv, s->ctx->policy(), full, s, true));
  s->ctx->policy().mark_saved();
  s->meta = m;
  lease.meta = m;
  return absl::OkStatus();
}

void SessionManager::release(SessionLease& lease, bool keep) {
  Session* s = lease.session;
  if (s == nullptr) return;
  lease.session = nullptr;
  lease.ctx = nullptr;
  size_t before = 0, after = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    before = charged_;
    s->busy = false;
    if (keep && s->ctx != nullptr) {
      // Idle: counted at what it holds now, and last in line for eviction.
      charged_ -= s->charge;
      s->charge = s->ctx->state_bytes();
      charged_ += s->charge;
      idle_bytes_ += s->charge;
      s->lru = lru_.insert(lru_.end(), s);
      s->in_lru = true;
      evict_idle_to(config_.hot_bytes);  // may evict s itself: do not touch it after this
      make_room(0);
    } else {
      drop_context(*s);
      sessions_.erase(s->key);
    }
    after = charged_;
  }
  released_.notify_all();
  if (after < before && maker_.on_room) maker_.on_room();
  if (after + (1 << 20) < before) trim_heap();
}

StatusOr<std::unique_ptr<LlamaContext>> SessionManager::one_off(const KvPolicyOptions& kv) {
  EDGEINF_ASSIGN_OR_RETURN(std::unique_ptr<LlamaContext> ctx, maker_.make(kv));
  std::lock_guard<std::mutex> lock(mu_);
  if (!make_room(ctx->max_state_bytes())) {
    return absl::ResourceExhaustedError(kNoRoom);
  }
  charged_ += ctx->max_state_bytes();
  return ctx;
}

void SessionManager::release_one_off(std::unique_ptr<LlamaContext> ctx) {
  if (ctx == nullptr) return;
  const size_t bound = ctx->max_state_bytes();
  ctx.reset();
  {
    std::lock_guard<std::mutex> lock(mu_);
    charged_ -= bound;
  }
  if (maker_.on_room) maker_.on_room();
  trim_heap();
}

// ---- memory ---------------------------------------------------------------------------------------

bool SessionManager::make_room(size_t need) {
  while (config_.fixed_bytes + charged_ + need > config_.memory_budget_bytes && !lru_.empty()) evict_oldest();
  return config_.fixed_bytes + charged_ + need <= config_.memory_budget_bytes;
}

void SessionManager::evict_idle_to(size_t idle_bytes) {
  while (idle_bytes_ > idle_bytes && !lru_.empty()) evict_oldest();
}

void SessionManager::evict_oldest() {
  Session* s = lru_.front();
  drop_context(*s);
  sessions_.erase(s->key);  // idle and without a context: nothing to keep
}

void SessionManager::drop_context(Session& s) {
  if (s.in_lru) {
    lru_.erase(s.lru);
    s.in_lru = false;
    idle_bytes_ -= s.charge;
  }
  charged_ -= s.charge;
  s.charge = 0;
  s.ctx.reset();
}

void SessionManager::enforce_budget(size_t resident_bytes) {
  if (resident_bytes <= config_.memory_budget_bytes) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    size_t over = resident_bytes - config_.memory_budget_bytes;
    while (over > 0 && !lru_.empty()) {
      over -= std::min(over, lru_.front()->charge);
      evict_oldest();
    }
  }
  trim_heap();
}

void SessionManager::trim_heap() {
  // At most every 100 ms: it walks the allocator's free lists.
  using Clock = std::chrono::steady_clock;
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch()).count();
  int64_t last = last_trim_ms_.load();
  if (now - last < 100 || !last_trim_ms_.compare_exchange_strong(last, now)) return;
  ::malloc_trim(0);
}

SessionManagerStats SessionManager::stats() {
  std::lock_guard<std::mutex> lock(mu_);
  SessionManagerStats s = totals_;
  for (const auto& [key, sess] : sessions_) s.hot_sessions += sess->ctx != nullptr;
  s.charged_bytes = int64_t(charged_);
  return s;
}

}  // namespace edgeinf
