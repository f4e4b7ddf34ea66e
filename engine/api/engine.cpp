// Engine: sessions (hot contexts in memory, snapshots in the store), admission by state bytes,
// and the scheduler thread that interleaves turns step by step.
#include "engine/api/engine.h"

#include <chrono>
#include <condition_variable>
#include <deque>
#include <list>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "engine/sampling/stop_matcher.h"
#include "engine/session/snapshot.h"
#include "engine/tokenizer/utf8_stream.h"
#include "engine/util/sha256.h"

namespace edgeinf {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_between(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }
int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

constexpr size_t kRecentTokens = 256;  // history kept for the repetition penalty
constexpr size_t kSnapshotHeadBytes = 64 << 10;

// What a session keeps besides its attention state (the snapshot's session section).
struct SessionMeta {
  std::string id, tenant;
  int64_t create_time = 0, update_time = 0;
  uint64_t version = 0;
  TokenId pending = -1;  // the last sampled token, not yet in the context
  std::vector<TokenId> recent;
  // Counts as of the last commit, readable from the snapshot head alone.
  int64_t total = 0, exact = 0, compressed = 0, dropped = 0, state_bytes = 0;
};

std::string encode_meta(const SessionMeta& m) {
  std::string out;
  ByteWriter w(&out);
  w.put_string(m.id);
  w.put_string(m.tenant);
  w.put<int64_t>(m.create_time);
  w.put<int64_t>(m.update_time);
  w.put<uint64_t>(m.version);
  w.put<int32_t>(m.pending);
  w.put<uint32_t>(uint32_t(m.recent.size()));
  w.put_array(m.recent.data(), m.recent.size());
  for (int64_t v : {m.total, m.exact, m.compressed, m.dropped, m.state_bytes}) w.put<int64_t>(v);
  return out;
}

Status decode_meta(std::string_view bytes, SessionMeta* m) {
  ByteReader r(bytes, "session metadata");
  EDGEINF_RETURN_IF_ERROR(r.get_string(&m->id, 128));
  EDGEINF_RETURN_IF_ERROR(r.get_string(&m->tenant, 1024));
  EDGEINF_RETURN_IF_ERROR(r.get(&m->create_time));
  EDGEINF_RETURN_IF_ERROR(r.get(&m->update_time));
  EDGEINF_RETURN_IF_ERROR(r.get(&m->version));
  EDGEINF_RETURN_IF_ERROR(r.get(&m->pending));
  uint32_t n = 0;
  EDGEINF_RETURN_IF_ERROR(r.get(&n));
  if (n > kRecentTokens) return absl::DataLossError("session metadata: too many recent tokens");
  m->recent.resize(n);
  EDGEINF_RETURN_IF_ERROR(r.get_array(m->recent.data(), n));
  for (int64_t* v : {&m->total, &m->exact, &m->compressed, &m->dropped, &m->state_bytes}) {
    EDGEINF_RETURN_IF_ERROR(r.get(v));
  }
  return absl::OkStatus();
}

std::string random_id() {
  std::random_device rd;
  std::string out;
  for (int i = 0; i < 4; ++i) absl::StrAppend(&out, absl::Hex(rd(), absl::kZeroPad8));
  return out;
}

bool valid_id(const std::string& id) {
  if (id.size() != 32) return false;
  for (char c : id) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string store_key(const std::string& tenant, const std::string& id) {
  return absl::StrCat(sha256_hex(tenant).substr(0, 16), "/", id);
}

// The etag of a session version, as clients see it.
std::string etag_of(uint64_t version) { return absl::StrCat(absl::Hex(version)); }

Status session_not_found(const std::string& id) {
  return absl::NotFoundError(absl::StrCat("session '", id, "' not found"));
}

// The session metadata of a snapshot that must belong to (tenant, id): another tenant's session
// is NotFound, never a different error that would confirm it exists.
StatusOr<SessionMeta> owned_meta(const SnapshotView& v, const std::string& tenant, const std::string& id) {
  SessionMeta m;
  EDGEINF_RETURN_IF_ERROR(decode_meta(v.session_meta, &m));
  if (m.tenant != tenant || m.id != id) return session_not_found(id);
  return m;
}

bool policy_drops(const std::string& name) { return name != "edgeinfinite" && name != "full"; }

// The counts a session reports, from its context.
void count(const LlamaContext& ctx, const std::string& policy, SessionMeta* m) {
  const KvPolicy& p = ctx.policy();
  m->total = p.n_seen() + (m->pending >= 0 ? 1 : 0);
  m->exact = p.n_kept();
  m->compressed = policy == "edgeinfinite" ? p.n_compressed() : 0;
  m->dropped = policy_drops(policy) ? p.n_compressed() : 0;
  m->state_bytes = int64_t(p.state_bytes());
}

SessionInfo info_of(const KvPolicyOptions& kv, const SessionMeta& m, const std::string& fingerprint) {
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

}  // namespace

struct Engine::Session {
  std::string key;
  KvPolicyOptions kv;
  SessionMeta meta;                    // as committed to the store
  std::unique_ptr<LlamaContext> ctx;   // null while only in the store
  bool busy = false;                   // a turn owns it
  std::list<Session*>::iterator lru;   // position among idle hot sessions
  bool in_lru = false;
};

struct Engine::Turn {
  TurnRequest req;
  TurnEvents ev;
  std::function<void(StatusOr<TurnResult>)> done;
  Clock::time_point arrival = Clock::now(), prefill_start, first_token, decode_start;
  bool started = false, decoding = false;
  Session* session = nullptr;
  std::unique_ptr<LlamaContext> own;  // one-off turns
  LlamaContext* ctx = nullptr;
  std::string policy;
  std::vector<TokenId> input;
  size_t fed = 0;
  int64_t cached = 0, next_progress = 0;
  std::unique_ptr<Sampler> sampler;
  Utf8Stream utf8;
  std::unique_ptr<StopMatcher> stops;
  std::span<const float> logits;
  int generated = 0;
  TokenId last = -1;
  TokenId feed = -1;  // sampled this step, to be fed in the batched pass
  std::vector<TokenId> held_ids;
  std::deque<TokenId> recent;
  size_t reserved = 0;
};

struct Engine::State {
  std::mutex mu;
  std::condition_variable cv;
  std::map<std::string, std::unique_ptr<Session>> sessions;
  std::list<Session*> lru;  // idle sessions with a context, least recently used first
  std::deque<std::unique_ptr<Turn>> queue;
  std::vector<std::unique_ptr<Turn>> active;
  size_t live_bytes = 0;  // state bytes of every context in memory
  bool stopping = false;
  std::thread thread;
};

Engine::Engine(const EngineConfig& config, std::unique_ptr<SessionStore> store)
    : config_(config), store_(std::move(store)), state_(std::make_unique<State>()) {}

StatusOr<std::unique_ptr<Engine>> Engine::create(const EngineConfig& config, std::unique_ptr<SessionStore> store) {
  if (store == nullptr) return absl::InvalidArgumentError("the engine needs a session store");
  std::unique_ptr<Engine> e(new Engine(config, std::move(store)));
  EDGEINF_ASSIGN_OR_RETURN(e->model_, LlamaModel::load(config.model_path));
  EDGEINF_ASSIGN_OR_RETURN(e->tokenizer_, Tokenizer::from_gguf(e->model_->gguf()));
  const AttentionShape shape = AttentionShape::of(*e->model_);
  EDGEINF_ASSIGN_OR_RETURN(e->gate_, load_default_gate(config.model_path, config.gate_path, shape,
                                                       e->model_->gguf().fingerprint()));
  e->default_kv_.name = config.default_policy;
  EDGEINF_ASSIGN_OR_RETURN(std::string warning, resolve_kv_shape(config.shape, e->gate_.get(), &e->default_kv_));
  (void)warning;  // the server logs the shape it runs with
  {
    // Validates the default shape; its byte size is what one-off turns are admitted against.
    EDGEINF_ASSIGN_OR_RETURN(std::unique_ptr<KvPolicy> policy, make_kv_policy(e->default_kv_, shape));
    e->one_off_state_bytes_ = policy->state_bytes();
  }
  const int threads = config.threads > 0 ? config.threads : int(std::max(1u, std::thread::hardware_concurrency()));
  e->pool_ = std::make_unique<kernels::cpu::ThreadPool>(threads);
  EDGEINF_ASSIGN_OR_RETURN(e->backend_, open_backend(config.device, *e->model_, nullptr));
  if (e->backend_ != nullptr && config.device == "cuda" && !e->backend_->supports(e->default_kv_.name)) {
    return absl::InvalidArgumentError(absl::StrCat("the default policy ", e->default_kv_.name, " does not run on ",
                                                   e->backend_->device(), " (use --device cpu or auto)"));
  }
  e->state_->thread = std::thread([raw = e.get()] { raw->loop(); });
  return e;
}

Engine::~Engine() { shutdown(); }

void Engine::shutdown() {
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    if (state_->stopping && !state_->thread.joinable()) return;
    state_->stopping = true;
  }
  state_->cv.notify_all();
  if (state_->thread.joinable()) state_->thread.join();
}

EngineStats Engine::stats() {
  std::lock_guard<std::mutex> lock(state_->mu);
  EngineStats s;
  s.active_turns = int64_t(state_->active.size());
  s.queued_turns = int64_t(state_->queue.size());
  for (const auto& [key, sess] : state_->sessions) s.hot_sessions += sess->ctx != nullptr;
  s.live_state_bytes = int64_t(state_->live_bytes);
  return s;
}

std::string Engine::gate_id(const KvPolicyOptions& kv) const {
  if (kv.name != "edgeinfinite" || gate_ == nullptr) return "";
  const GateConfig& g = gate_->config();
  return absl::StrCat(gate_kind_name(g.kind), ":", g.calibration_hash.substr(0, 16));
}

StatusOr<std::unique_ptr<LlamaContext>> Engine::new_context(const KvPolicyOptions& kv) const {
  LlamaContextOptions o;
  o.kv = kv;
  o.kv.gate = kv.name == "edgeinfinite" ? gate_.get() : nullptr;
  o.n_batch = kv.segment;
  o.backend = backend_for_policy(backend_.get(), config_.device, kv.name);
  return LlamaContext::create(*model_, *pool_, o);
}

StatusOr<std::unique_ptr<LlamaContext>> Engine::restore_context(const SnapshotView& v) const {
  SnapshotHeader want{model_->gguf().fingerprint(), v.header.kv, gate_id(v.header.kv)};
  EDGEINF_RETURN_IF_ERROR(check_compatible(want, v.header));
  EDGEINF_ASSIGN_OR_RETURN(std::unique_ptr<LlamaContext> ctx, new_context(v.header.kv));
  ByteReader r(v.policy_state, "session snapshot state");
  EDGEINF_RETURN_IF_ERROR(ctx->policy().restore(r));
  return ctx;
}

// Called with the lock held: drops idle contexts, least recently used first, until the live
// state fits in keep_bytes.
void Engine::evict_idle_contexts(size_t keep_bytes) {
  while (state_->live_bytes > keep_bytes && !state_->lru.empty()) {
    Session* s = state_->lru.front();
    drop_context(*s);
  }
}

void Engine::drop_context(Session& s) {
  if (s.in_lru) {
    state_->lru.erase(s.lru);
    s.in_lru = false;
  }
  if (s.ctx != nullptr) {
    state_->live_bytes -= s.ctx->policy().state_bytes();
    s.ctx.reset();
  }
}

StatusOr<SessionInfo> Engine::create_session(const std::string& tenant, const std::string& policy,
                                             const KvShapeRequest& shape) {
  KvPolicyOptions kv = default_kv_;
  if (!policy.empty()) kv.name = policy;
  EDGEINF_ASSIGN_OR_RETURN(std::string warning, resolve_kv_shape(shape, kv.name == "edgeinfinite" ? gate_.get() : nullptr, &kv));
  (void)warning;
  auto s = std::make_unique<Session>();
  s->kv = kv;
  EDGEINF_ASSIGN_OR_RETURN(s->ctx, new_context(kv));  // validates the policy and shape
  s->meta.create_time = unix_now();
  return add_session(tenant, std::move(s));
}

StatusOr<SessionInfo> Engine::add_session(const std::string& tenant, std::unique_ptr<Session> s) {
  {
    EDGEINF_ASSIGN_OR_RETURN(std::vector<std::string> keys, store_->list(store_key(tenant, "")));
    if (int64_t(keys.size()) >= config_.max_sessions_per_tenant) {
      return absl::ResourceExhaustedError(
          absl::StrCat("this tenant has ", keys.size(), " sessions, the limit is ", config_.max_sessions_per_tenant));
    }
  }
  s->meta.id = random_id();
  s->meta.tenant = tenant;
  s->meta.update_time = unix_now();
  s->key = store_key(tenant, s->meta.id);
  count(*s->ctx, s->kv.name, &s->meta);
  EDGEINF_RETURN_IF_ERROR(commit_session(*s));
  // Until its first turn the state is in the store: keep only the metadata.
  s->ctx.reset();
  const SessionInfo info = info_of(s->kv, s->meta, model_->gguf().fingerprint());
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->sessions[s->key] = std::move(s);
  return info;
}

Status Engine::commit_session(Session& s) {
  SnapshotHeader h{model_->gguf().fingerprint(), s.kv, gate_id(s.kv)};
  EDGEINF_ASSIGN_OR_RETURN(std::string bytes, write_snapshot(h, encode_meta(s.meta), s.ctx->policy()));
  return store_->put(s.key, bytes);
}


StatusOr<SessionInfo> Engine::get_session(const std::string& tenant, const std::string& id) {
  if (!valid_id(id)) return session_not_found(id);
  // The store is the truth: another replica may have moved the session on.
  EDGEINF_ASSIGN_OR_RETURN(std::optional<std::string> head, store_->get_head(store_key(tenant, id), kSnapshotHeadBytes));
  if (!head) return session_not_found(id);
  EDGEINF_ASSIGN_OR_RETURN(SnapshotView v, read_snapshot_head(*head));
  EDGEINF_ASSIGN_OR_RETURN(SessionMeta m, owned_meta(v, tenant, id));
  return info_of(v.header.kv, m, v.header.model_fingerprint);
}

StatusOr<std::vector<SessionInfo>> Engine::list_sessions(const std::string& tenant) {
  EDGEINF_ASSIGN_OR_RETURN(std::vector<std::string> keys, store_->list(store_key(tenant, "")));
  std::vector<SessionInfo> out;
  for (const std::string& key : keys) {
    auto info = get_session(tenant, key.substr(key.find('/') + 1));
    if (info.ok()) out.push_back(std::move(*info));  // a session deleted meanwhile is skipped
  }
  return out;
}

Status Engine::delete_session(const std::string& tenant, const std::string& id) {
  EDGEINF_RETURN_IF_ERROR(get_session(tenant, id).status());
  const std::string key = store_key(tenant, id);
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    auto it = state_->sessions.find(key);
    if (it != state_->sessions.end()) {
      if (it->second->busy) return absl::AbortedError("a turn is running on this session; retry when it ends");
      drop_context(*it->second);
      state_->sessions.erase(it);
    }
  }
  return store_->remove(key);
}

StatusOr<std::string> Engine::export_session(const std::string& tenant, const std::string& id) {
  EDGEINF_RETURN_IF_ERROR(get_session(tenant, id).status());
  EDGEINF_ASSIGN_OR_RETURN(std::optional<std::string> bytes, store_->get(store_key(tenant, id)));
  if (!bytes) return session_not_found(id);
  return std::move(*bytes);
}

StatusOr<SessionInfo> Engine::import_session(const std::string& tenant, const std::string& snapshot) {
  EDGEINF_ASSIGN_OR_RETURN(SnapshotView v, read_snapshot(snapshot));
  auto s = std::make_unique<Session>();
  s->kv = v.header.kv;
  EDGEINF_ASSIGN_OR_RETURN(s->ctx, restore_context(v));
  EDGEINF_RETURN_IF_ERROR(decode_meta(v.session_meta, &s->meta));
  // An import is a new session of the importing tenant (a new id; the creation time is kept).
  return add_session(tenant, std::move(s));
}

void Engine::submit(TurnRequest request, TurnEvents events, std::function<void(StatusOr<TurnResult>)> done) {
  auto t = std::make_unique<Turn>();
  t->req = std::move(request);
  t->ev = std::move(events);
  t->done = std::move(done);
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    if (state_->stopping) {
      t->done(absl::UnavailableError("the server is shutting down"));
      return;
    }
    state_->queue.push_back(std::move(t));
  }
  state_->cv.notify_all();
}

void Engine::loop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(state_->mu);
      state_->cv.wait(lock, [&] { return !state_->queue.empty() || !state_->active.empty() || state_->stopping; });
      if (state_->stopping && state_->queue.empty() && state_->active.empty()) return;
      while (!state_->queue.empty()) {
        state_->active.push_back(std::move(state_->queue.front()));
        state_->queue.pop_front();
      }
    }
    // One step of every active turn: a prefill segment each, and one batched forward pass that
    // feeds every decoding turn its sampled token.
    std::vector<Turn*> feed;
    std::vector<bool> done(state_->active.size(), false);
    for (size_t i = 0; i < state_->active.size(); ++i) {
      Turn& t = *state_->active[i];
      done[i] = step_turn(t);
      if (!done[i] && t.decoding && t.feed >= 0) feed.push_back(&t);
    }
    if (!feed.empty()) {
      std::vector<LlamaContext*> ctxs;
      std::vector<TokenId> toks;
      for (Turn* t : feed) ctxs.push_back(t->ctx), toks.push_back(t->feed);
      auto logits = LlamaContext::eval_each(ctxs, toks);
      for (size_t j = 0; j < feed.size(); ++j) {
        Turn& t = *feed[j];
        t.feed = -1;
        if (logits.ok()) {
          t.logits = (*logits)[j];
          t.last = -1;  // fed
        } else {
          finish_turn(t, logits.status());
          for (size_t i = 0; i < state_->active.size(); ++i) {
            if (state_->active[i].get() == &t) done[i] = true;
          }
        }
      }
    }
    std::lock_guard<std::mutex> lock(state_->mu);
    for (size_t i = state_->active.size(); i-- > 0;) {
      if (done[i]) state_->active.erase(state_->active.begin() + ptrdiff_t(i));
    }
  }
}

StatusOr<Engine::Session*> Engine::load_session(const std::string& tenant, const std::string& id, bool need_context) {
  if (!valid_id(id)) return session_not_found(id);
  const std::string key = store_key(tenant, id);
  Session* s = nullptr;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    auto it = state_->sessions.find(key);
    if (it != state_->sessions.end()) s = it->second.get();
  }
  if (s != nullptr && s->ctx != nullptr) {
    // Still current? Another replica sharing the store may have committed a newer turn.
    EDGEINF_ASSIGN_OR_RETURN(SessionInfo stored, get_session(tenant, id));
    if (stored.etag == etag_of(s->meta.version)) return s;
  } else if (s != nullptr && !need_context) {
    return s;
  }
  // Read the committed snapshot.
  EDGEINF_ASSIGN_OR_RETURN(std::optional<std::string> bytes, store_->get(key));
  if (!bytes) return session_not_found(id);
  EDGEINF_ASSIGN_OR_RETURN(SnapshotView v, read_snapshot(*bytes));
  EDGEINF_ASSIGN_OR_RETURN(SessionMeta m, owned_meta(v, tenant, id));
  EDGEINF_ASSIGN_OR_RETURN(std::unique_ptr<LlamaContext> ctx, restore_context(v));
  std::lock_guard<std::mutex> lock(state_->mu);
  auto& slot = state_->sessions[key];
  if (slot == nullptr) slot = std::make_unique<Session>();
  slot->key = key;
  slot->kv = v.header.kv;
  slot->meta = m;
  drop_context(*slot);
  state_->live_bytes += ctx->policy().state_bytes();
  slot->ctx = std::move(ctx);
  return slot.get();
}

Status Engine::start_turn(Turn& t) {
  const TurnRequest& r = t.req;
  EDGEINF_RETURN_IF_ERROR(validate(r.gen.sampling));
  if (r.gen.max_tokens < 0 || r.gen.max_tokens > config_.max_tokens_limit) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_tokens must be in [0, ", config_.max_tokens_limit, "], got ", r.gen.max_tokens));
  }
  for (TokenId id : r.tokens) {
    if (id < 0 || id >= tokenizer_->n_vocab()) {
      return absl::InvalidArgumentError(absl::StrCat("token id ", id, " is outside the vocabulary"));
    }
  }
  std::vector<TokenId> history;
  if (!r.session_id.empty()) {
    {
      std::lock_guard<std::mutex> lock(state_->mu);
      auto it = state_->sessions.find(store_key(r.tenant, r.session_id));
      if (it != state_->sessions.end() && it->second->busy) {
        return absl::AbortedError("a turn is already running on this session");
      }
    }
    EDGEINF_ASSIGN_OR_RETURN(Session * s, load_session(r.tenant, r.session_id, true));
    std::lock_guard<std::mutex> lock(state_->mu);
    if (s->busy) return absl::AbortedError("a turn is already running on this session");
    if (!r.etag.empty() && r.etag != etag_of(s->meta.version)) {
      return absl::AbortedError("the session changed since that etag; read it again");
    }
    s->busy = true;
    if (s->in_lru) {
      state_->lru.erase(s->lru);
      s->in_lru = false;
    }
    t.session = s;
    t.ctx = s->ctx.get();
    t.policy = s->kv.name;
    t.cached = s->ctx->n_past();
    if (s->meta.pending >= 0) t.input.push_back(s->meta.pending);
    history = s->meta.recent;
    // Admission: the session's context is already counted; make room among idle ones.
    evict_idle_contexts(config_.memory_budget_bytes);
  } else {
    if (r.tokens.empty()) return absl::InvalidArgumentError("the prompt is empty");
    const size_t need = one_off_state_bytes_;
    {
      std::lock_guard<std::mutex> lock(state_->mu);
      evict_idle_contexts(config_.memory_budget_bytes > need ? config_.memory_budget_bytes - need : 0);
      if (state_->live_bytes + need > config_.memory_budget_bytes) {
        return absl::ResourceExhaustedError("the server's memory budget is in use; retry shortly");
      }
      state_->live_bytes += need;
      t.reserved = need;
    }
    EDGEINF_ASSIGN_OR_RETURN(t.own, new_context(default_kv_));
    t.ctx = t.own.get();
    t.policy = default_kv_.name;
  }
  t.input.insert(t.input.end(), r.tokens.begin(), r.tokens.end());
  if (t.ctx->capacity() - t.ctx->n_past() < int64_t(t.input.size())) {
    return absl::OutOfRangeError(absl::StrCat("the input has ", t.input.size(), " tokens; the session's context holds ",
                                              t.ctx->capacity() - t.ctx->n_past(), " more"));
  }
  t.sampler = std::make_unique<Sampler>(r.gen.sampling, tokenizer_->n_vocab());
  for (TokenId id : history) t.sampler->accept(id), t.recent.push_back(id);
  for (TokenId id : r.tokens) t.sampler->accept(id), t.recent.push_back(id);
  while (t.recent.size() > kRecentTokens) t.recent.pop_front();
  t.stops = std::make_unique<StopMatcher>(r.gen.stop);
  t.prefill_start = Clock::now();
  t.next_progress = r.progress_every > 0 ? r.progress_every : 0;
  t.decoding = t.input.empty();
  return absl::OkStatus();
}

bool Engine::step_turn(Turn& t) {
  if (t.ev.cancelled && t.ev.cancelled()) {
    finish_turn(t, absl::CancelledError("the request was cancelled"));
    return true;
  }
  if (!t.started) {
    t.started = true;
    Status st = start_turn(t);
    if (!st.ok()) {
      finish_turn(t, st);
      return true;
    }
    if (!t.decoding) return false;
  }
  if (!t.decoding) {
    const size_t n = std::min(size_t(t.ctx->n_batch()), t.input.size() - t.fed);
    auto logits = t.ctx->eval(std::span<const TokenId>(t.input.data() + t.fed, n));
    if (!logits.ok()) {
      finish_turn(t, logits.status());
      return true;
    }
    t.logits = *logits;
    t.fed += n;
    const int64_t done = int64_t(t.fed), total = int64_t(t.input.size());
    if (t.ev.progress && (t.req.progress_every <= 0 || done >= t.next_progress || done == total)) {
      t.ev.progress(done, total);
      while (t.req.progress_every > 0 && t.next_progress <= done) t.next_progress += t.req.progress_every;
    }
    if (t.fed == t.input.size()) {
      t.decoding = true;
      t.decode_start = Clock::now();
    }
    return false;
  }
  TurnResult res;
  auto flush = [&] {
    const std::string text = t.stops->push(t.utf8.flush()) + t.stops->flush();
    if ((!text.empty() || !t.held_ids.empty()) && t.ev.delta) t.ev.delta(text, std::move(t.held_ids));
    t.held_ids.clear();
  };
  auto end = [&](FinishReason why) {
    if (why != FinishReason::kStopString) flush();
    res.finish = why;
    finish_turn(t, res);
    return true;
  };
  if (t.generated >= t.req.gen.max_tokens) return end(FinishReason::kLength);
  if (t.logits.empty()) return end(FinishReason::kLength);  // nothing was evaluated (empty input)
  const TokenId token = t.sampler->sample(t.logits);
  t.sampler->accept(token);
  t.recent.push_back(token);
  if (t.recent.size() > kRecentTokens) t.recent.pop_front();
  t.last = token;
  if (t.generated == 0) t.first_token = Clock::now();
  if (!t.req.gen.ignore_eos && tokenizer_->is_eog(token)) return end(FinishReason::kEndOfGeneration);
  ++t.generated;
  t.held_ids.push_back(token);
  const std::string text = t.stops->push(t.utf8.push(tokenizer_->token_to_piece(token)));
  if (!text.empty()) {
    if (t.ev.delta) t.ev.delta(text, std::move(t.held_ids));
    t.held_ids.clear();
  }
  if (t.stops->stopped()) return end(FinishReason::kStopString);
  if (t.generated >= t.req.gen.max_tokens) return end(FinishReason::kLength);
  if (t.ctx->n_past() >= t.ctx->capacity()) return end(FinishReason::kContextFull);
  t.feed = token;  // the loop feeds every decoding turn's token in one batched pass
  return false;
}

void Engine::finish_turn(Turn& t, StatusOr<TurnResult> result) {
  const auto now = Clock::now();
  if (result.ok()) {
    TurnResult& r = *result;
    r.usage.prompt_tokens = int64_t(t.req.tokens.size());
    r.usage.cached_tokens = t.cached;
    r.usage.generated_tokens = t.generated;
    const double prefill_s = seconds_between(t.prefill_start, t.decoding ? t.decode_start : now);
    const double decode_s = t.decoding ? seconds_between(t.decode_start, now) : 0;
    r.usage.ttft_s = t.generated > 0 ? seconds_between(t.arrival, t.first_token) : seconds_between(t.arrival, now);
    r.usage.prefill_tok_s = prefill_s > 0 ? double(t.input.size()) / prefill_s : 0;
    r.usage.decode_tok_s = decode_s > 0 ? double(t.generated) / decode_s : 0;
  }
  if (t.session != nullptr) {
    Session& s = *t.session;
    if (result.ok()) {
      // Commit: the new state is durable before the final event.
      SessionMeta m = s.meta;
      m.pending = t.last;
      m.recent.assign(t.recent.begin(), t.recent.end());
      m.version += 1;
      m.update_time = unix_now();
      count(*s.ctx, s.kv.name, &m);
      const SessionMeta before = s.meta;
      s.meta = m;
      Status st = commit_session(s);
      if (!st.ok()) {
        s.meta = before;
        result = st;
      } else {
        TurnResult& r = *result;
        r.etag = etag_of(m.version);
        r.session_tokens = m.total;
        r.usage.exact_tokens = m.exact;
        r.usage.compressed_tokens = m.compressed;
        r.usage.dropped_tokens = m.dropped;
        r.usage.state_bytes = m.state_bytes;
      }
    }
    std::lock_guard<std::mutex> lock(state_->mu);
    s.busy = false;
    if (!result.ok()) {
      drop_context(s);  // half a turn: the store still holds the state before it
    } else if (s.ctx != nullptr) {
      s.lru = state_->lru.insert(state_->lru.end(), &s);
      s.in_lru = true;
      evict_idle_contexts(std::min(config_.hot_bytes, config_.memory_budget_bytes));
    }
  } else if (t.own != nullptr) {
    if (result.ok()) {
      SessionMeta m;
      m.pending = t.last;
      count(*t.own, t.policy, &m);
      TurnResult& r = *result;
      r.usage.exact_tokens = m.exact;
      r.usage.compressed_tokens = m.compressed;
      r.usage.dropped_tokens = m.dropped;
      r.usage.state_bytes = m.state_bytes;
      r.session_tokens = m.total;
    }
    t.own.reset();
  }
  if (t.reserved > 0) {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->live_bytes -= t.reserved;
    t.reserved = 0;
  }
  t.done(std::move(result));
}

}  // namespace edgeinf
