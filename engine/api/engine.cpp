// Engine: the model and its sessions behind one façade, and a turn's life as a job of the step
// scheduler (prepared on an I/O thread, stepped in rounds, committed on an I/O thread).
#include "engine/api/engine.h"

#include <chrono>
#include <deque>
#include <filesystem>
#include <thread>

#include "absl/strings/str_cat.h"
#include "engine/session/session_meta.h"
#include "engine/util/process_memory.h"

namespace edgeinf {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// What the process needs besides contexts beyond what is resident at start: the weights (mapped,
// resident once read), the scheduler's scratch for a segment, batched-decode logits for up to 64
// streams, and the runtime's own (RPC buffers, thread stacks).
size_t fixed_process_bytes(const LlamaModel& model, const std::string& model_path, int segment) {
  const LlamaConfig& c = model.config();
  std::error_code ec;
  const size_t weights = size_t(std::filesystem::file_size(model_path, ec));
  const size_t per_token = size_t(2 * c.n_embd + 3 * int64_t(c.n_head) * c.head_dim +
                                  2 * int64_t(c.n_kv_head) * c.head_dim + 2 * int64_t(c.n_ff)) *
                           sizeof(float);
  const size_t scratch = size_t(std::max(segment, 256)) * per_token + 64 * size_t(c.n_vocab) * sizeof(float);
  constexpr size_t kRuntime = size_t(64) << 20;
  return resident_bytes() + (ec ? 0 : weights) + scratch + kRuntime;
}

}  // namespace

// ---- TurnInput ----------------------------------------------------------------------------------

void TurnInput::append(std::vector<TokenId> tokens) {
  std::function<void()> wake;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_ || detached_) return;
    tokens_.insert(tokens_.end(), tokens.begin(), tokens.end());
    wake = wake_;
  }
  if (wake) wake();
}

void TurnInput::close() {
  std::function<void()> wake;
  {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    wake = wake_;
  }
  if (wake) wake();
}

void TurnInput::abort(Status why) {
  std::function<void()> wake;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (aborted_.ok()) aborted_ = why.ok() ? absl::CancelledError("the input was abandoned") : std::move(why);
    closed_ = true;
    wake = wake_;
  }
  if (wake) wake();
}

size_t TurnInput::waiting() const {
  std::lock_guard<std::mutex> lock(mu_);
  return tokens_.size() - taken_;
}

void TurnInput::when_below(size_t low, std::function<void()> on_room) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (detached_) return;
    if (tokens_.size() - taken_ >= low) {
      low_ = low;
      on_room_ = std::move(on_room);
      return;
    }
  }
  on_room();
}

TurnInput::Taken TurnInput::take(size_t max) {
  std::function<void()> on_room;
  Taken out;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const size_t n = std::min(max, tokens_.size() - taken_);
    out.tokens.assign(tokens_.begin() + int64_t(taken_), tokens_.begin() + int64_t(taken_ + n));
    taken_ += n;
    if (taken_ == tokens_.size()) tokens_.clear(), taken_ = 0;
    out.closed = closed_ && taken_ == tokens_.size();
    out.aborted = aborted_;
    if (on_room_ && tokens_.size() - taken_ < low_) on_room = std::move(on_room_), on_room_ = nullptr;
  }
  if (on_room) on_room();
  return out;
}

void TurnInput::attach(std::function<void()> wake) {
  std::lock_guard<std::mutex> lock(mu_);
  wake_ = std::move(wake);
}

void TurnInput::detach() {
  std::lock_guard<std::mutex> lock(mu_);
  detached_ = true;
  wake_ = nullptr;
  on_room_ = nullptr;
}

// ---- turns --------------------------------------------------------------------------------------

struct Engine::Turn final : StepScheduler::Job {
  explicit Turn(Engine* e) : engine(e) {}
  Status prepare() override { return engine->prepare_turn(*this); }
  bool cancelled() const override { return ev.cancelled && ev.cancelled(); }
  Step step() override {
    bool worked = false;
    result = engine->step_turn(*this, &worked);
    if (result) return Step::kEnded;
    if (decoding && feed >= 0) return Step::kFeed;
    return worked ? Step::kWorked : Step::kIdle;
  }
  // A session turn that succeeded commits its new state before done is called.
  bool writes_on_end() const override { return lease.session != nullptr && result && result->ok(); }
  void end(Status why) override {
    engine->end_turn(*this, why.ok() ? std::move(*result) : StatusOr<TurnResult>(std::move(why)));
  }

  Engine* engine;
  TurnRequest req;
  TurnEvents ev;
  std::function<void(StatusOr<TurnResult>)> done;
  Clock::time_point arrival = Clock::now(), prefill_start, first_token, decode_start;
  bool decoding = false;
  SessionLease lease;                 // a session turn's session, held until it ends
  std::unique_ptr<LlamaContext> own;  // a one-off turn's context
  LlamaContext* ctx = nullptr;
  std::string policy;
  std::vector<TokenId> input;  // to prefill: [pending token] + the request's tokens (+ streamed ones)
  size_t fed = 0;
  bool input_complete = true;  // false while a stream may still bring tokens
  int64_t prompt = 0, cached = 0, next_progress = 0, prefilled = 0;
  std::unique_ptr<DecodeStep> decoder;
  std::span<const float> logits;
  bool dirty = false;  // the context has changed since the turn took it
  TokenId last = -1;   // the last sampled token, until fed
  TokenId feed = -1;   // sampled this step, to be fed in the round's batched pass
  std::deque<TokenId> recent;
  std::optional<StatusOr<TurnResult>> result;  // set by the step that ended the turn
};

Engine::Engine(const EngineConfig& config) : config_(config) {}

StatusOr<std::unique_ptr<Engine>> Engine::create(const EngineConfig& config,
                                                 std::function<StatusOr<std::unique_ptr<SessionStore>>()> open_store) {
  std::unique_ptr<Engine> e(new Engine(config));
  EDGEINF_ASSIGN_OR_RETURN(e->model_, LlamaModel::load(config.model_path));
  EDGEINF_ASSIGN_OR_RETURN(e->tokenizer_, Tokenizer::from_gguf(e->model_->gguf()));
  const AttentionShape shape = AttentionShape::of(*e->model_);
  EDGEINF_ASSIGN_OR_RETURN(
      e->gate_, load_default_gate(config.model_path, config.gate_path, shape, e->model_->gguf().fingerprint()));
  e->default_kv_.name = config.default_policy;
  EDGEINF_ASSIGN_OR_RETURN(std::string warning, resolve_kv_shape(config.shape, e->gate_.get(), &e->default_kv_));
  (void)warning;  // the server logs the shape it runs with
  size_t one_off_bound = 0;
  {
    // Validates the default shape; its bound is what a one-off turn needs at most.
    KvPolicyOptions kv = e->default_kv_;
    kv.gate = gate_for_policy(kv, e->gate_.get());
    EDGEINF_ASSIGN_OR_RETURN(std::unique_ptr<KvPolicy> policy, make_kv_policy(kv, shape));
    one_off_bound = policy->max_state_bytes();
  }
  const int threads = config.threads > 0 ? config.threads : int(std::max(1u, std::thread::hardware_concurrency()));
  e->pool_ = std::make_unique<kernels::cpu::ThreadPool>(threads);
  e->io_pool_ = std::make_unique<kernels::cpu::ThreadPool>(1);
  EDGEINF_ASSIGN_OR_RETURN(e->backends_, config.open_backends ? config.open_backends(*e->model_, *e->pool_)
                                                              : open_backends(config.device, *e->model_, *e->pool_));
  if (!e->backends_.for_policy(e->default_kv_.name).supports(e->default_kv_.name)) {
    return absl::InvalidArgumentError(absl::StrCat("the default policy ", e->default_kv_.name, " does not run on ",
                                                   e->backends_.label(), " (use --device cpu or auto)"));
  }
  e->fixed_bytes_ = fixed_process_bytes(*e->model_, config.model_path, e->default_kv_.segment) + config.io_bytes;
  if (e->fixed_bytes_ + one_off_bound > config.memory_budget_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("the memory budget of ", config.memory_budget_bytes >> 20,
                     " MiB is too small: the model, runtime and I/O allowance need ", e->fixed_bytes_ >> 20,
                     " MiB and one session of the default policy up to ", one_off_bound >> 20, " MiB more"));
  }
  EDGEINF_ASSIGN_OR_RETURN(std::unique_ptr<SessionStore> store, open_store());
  SessionManagerConfig sc;
  sc.max_sessions_per_tenant = config.max_sessions_per_tenant;
  sc.memory_budget_bytes = config.memory_budget_bytes;
  sc.fixed_bytes = e->fixed_bytes_;
  sc.hot_bytes = config.hot_bytes;
  sc.max_deltas = config.max_deltas;
  sc.io_bytes = config.io_bytes;
  ContextMaker maker;
  Engine* raw = e.get();
  maker.make = [raw](const KvPolicyOptions& kv) { return raw->new_context(kv); };
  maker.make_policy = [raw, shape](const KvPolicyOptions& kv) {
    KvPolicyOptions o = kv;
    o.gate = gate_for_policy(kv, raw->gate_.get());
    return make_kv_policy(o, shape);
  };
  maker.header = [raw](const KvPolicyOptions& kv) {
    return SnapshotHeader{raw->model_->gguf().fingerprint(), kv, raw->gate_id(kv)};
  };
  maker.pool = e->io_pool_.get();
  maker.on_room = [raw] { raw->scheduler_->retry_waiting(); };
  e->sessions_ = std::make_unique<SessionManager>(sc, std::move(store), std::move(maker));
  StepScheduler::Config scheduling;
  scheduling.io_threads = config.io_threads;
  scheduling.admission_wait_ms = config.admission_wait_ms;
  scheduling.waits_for_room = [](const Status& st) { return SessionManager::no_room(st); };
  scheduling.feed = [raw](std::span<StepScheduler::Job* const> jobs) { return raw->feed(jobs); };
  e->scheduler_ = std::make_unique<StepScheduler>(std::move(scheduling));
  return e;
}

Engine::~Engine() { shutdown(); }

void Engine::shutdown() {
  if (scheduler_ != nullptr) scheduler_->shutdown();
}

EngineStats Engine::stats() {
  const StepScheduler::Stats t = scheduler_->stats();
  EngineStats s;
  s.queued_turns = t.queued;
  s.active_turns = t.active;
  s.committing_turns = t.committing;
  s.sessions = sessions_->stats();
  return s;
}

size_t Engine::enforce_memory_budget() {
  const size_t rss = resident_bytes();
  sessions_->enforce_budget(rss);
  return rss;
}

EngineInfo Engine::info() const {
  EngineInfo i;
  const LlamaConfig& c = model_->config();
  i.model_name = c.name;
  i.model_fingerprint = model_->gguf().fingerprint();
  i.native_context = c.n_ctx_train;
  i.policies = kv_policy_names();
  i.default_kv = default_kv_;
  if (gate_ != nullptr) {
    i.gate = absl::StrCat(gate_->describe(), " (calibration ", gate_->config().calibration_hash.substr(0, 16), ")");
  }
  i.device = backends_.label();
  return i;
}

Status Engine::health() const {
  const Status f = backends_.failure();
  if (f.ok()) return f;
  return absl::UnavailableError(
      absl::StrCat("this replica is out of service after a device failure (", f.message(), "); it must be restarted"));
}

std::vector<TokenId> Engine::tokenize(std::string_view text, bool parse_special) const {
  return tokenizer_->encode(text, /*add_special=*/false, parse_special);
}

StatusOr<std::vector<TokenId>> Engine::prompt_tokens(const TurnPrompt& p, bool fresh) const {
  switch (p.kind) {
    case TurnPrompt::Kind::kText:
      if (p.text.empty()) return absl::InvalidArgumentError("text is empty");
      return tokenizer_->encode(p.text, /*add_special=*/fresh, /*parse_special=*/false);
    case TurnPrompt::Kind::kMessages: {
      for (const ChatMessage& m : p.messages) {
        if (m.role != "system" && m.role != "user" && m.role != "assistant") {
          return absl::InvalidArgumentError(
              absl::StrCat("messages: unknown role ", quoted_name(m.role), " (system, user, assistant)"));
        }
      }
      if (p.messages.empty()) return absl::InvalidArgumentError("messages is empty");
      EDGEINF_ASSIGN_OR_RETURN(ChatTemplate tmpl, detect_chat_template(tokenizer_->chat_template()));
      // A later turn of a session: the conversation already opened (with its default system
      // message, if the template has one), and ChatML continues on the line after the previous
      // answer's end-of-turn token.
      if (!fresh) tmpl.default_system.clear();
      std::string text = render_chat(tmpl, p.messages, true);
      if (!fresh && tmpl.format == ChatFormat::kChatMl) text = "\n" + text;
      return tokenizer_->encode(text, /*add_special=*/fresh, /*parse_special=*/true);
    }
    case TurnPrompt::Kind::kTokenIds: return p.token_ids;
    case TurnPrompt::Kind::kNone: break;
  }
  return absl::InvalidArgumentError("input is missing: set text, messages or token_ids");
}

std::string Engine::gate_id(const KvPolicyOptions& kv) const {
  if (gate_for_policy(kv, gate_.get()) == nullptr) return "";
  const GateConfig& g = gate_->config();
  return absl::StrCat(gate_kind_name(g.kind), ":", g.calibration_hash.substr(0, 16));
}

StatusOr<std::unique_ptr<LlamaContext>> Engine::new_context(const KvPolicyOptions& kv) const {
  LlamaContextOptions o;
  o.kv = kv;
  o.kv.gate = gate_for_policy(kv, gate_.get());
  o.n_batch = kv.segment;
  return LlamaContext::create(backends_.for_policy(kv.name), o);
}

// ---- sessions -----------------------------------------------------------------------------------

StatusOr<SessionInfo> Engine::create_session(const std::string& tenant, const std::string& policy,
                                             const KvShapeRequest& shape, int budget, int context) {
  KvPolicyOptions kv = default_kv_;
  if (!policy.empty()) kv.name = policy;
  // What the request leaves unset is the server's default shape (itself the gate's unless the
  // server was given one), not the gate's training shape.
  EDGEINF_ASSIGN_OR_RETURN(std::string warning, resolve_kv_shape(shape, nullptr, &kv));
  (void)warning;
  const int n_ctx_train = model_->config().n_ctx_train;
  if (context < 0 || context > n_ctx_train) {
    return absl::InvalidArgumentError(
        absl::StrCat("context must be in [0, ", n_ctx_train, "] (the model's trained context), got ", context));
  }
  if (budget < 0 || budget > n_ctx_train) {
    return absl::InvalidArgumentError(absl::StrCat("budget must be in [0, ", n_ctx_train, "], got ", budget));
  }
  kv.n_ctx = context;
  kv.budget = budget;
  kv.gate = nullptr;
  return sessions_->create(tenant, kv);
}

StatusOr<SessionInfo> Engine::get_session(const std::string& tenant, const std::string& id) {
  return sessions_->get(tenant, id);
}

StatusOr<std::vector<SessionInfo>> Engine::list_sessions(const std::string& tenant) { return sessions_->list(tenant); }

Status Engine::delete_session(const std::string& tenant, const std::string& id) {
  return sessions_->remove(tenant, id);
}

StatusOr<Engine::Exported> Engine::export_session(const std::string& tenant, const std::string& id) {
  Exported out;
  EDGEINF_ASSIGN_OR_RETURN(out.bytes, sessions_->export_snapshot(tenant, id, &out.hold));
  return out;
}

StatusOr<SessionInfo> Engine::import_session(const std::string& tenant, const std::string& snapshot) {
  return sessions_->import_snapshot(tenant, snapshot);
}

// ---- a turn's life ------------------------------------------------------------------------------

void Engine::submit(TurnRequest request, TurnEvents events, std::function<void(StatusOr<TurnResult>)> done) {
  auto t = std::make_unique<Turn>(this);
  t->req = std::move(request);
  t->ev = std::move(events);
  t->done = std::move(done);
  scheduler_->submit(std::move(t));
}

StatusOr<std::vector<TokenId>> Engine::check_turn(const TurnRequest& r, bool fresh) const {
  EDGEINF_RETURN_IF_ERROR(check_options(r));
  return turn_tokens(r, fresh);
}

Status Engine::check_options(const TurnRequest& r) const {
  EDGEINF_RETURN_IF_ERROR(validate(r.gen.sampling));
  if (r.gen.max_tokens < 0 || r.gen.max_tokens > config_.max_tokens_limit) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_tokens must be in [0, ", config_.max_tokens_limit, "], got ", r.gen.max_tokens));
  }
  return absl::OkStatus();
}

StatusOr<std::vector<TokenId>> Engine::turn_tokens(const TurnRequest& r, bool fresh) const {
  std::vector<TokenId> tokens;
  if (r.prompt.kind != TurnPrompt::Kind::kNone || r.stream == nullptr) {
    EDGEINF_ASSIGN_OR_RETURN(tokens, prompt_tokens(r.prompt, fresh));
  }
  if (r.stream != nullptr && fresh && tokenizer_->add_bos() && tokenizer_->bos() >= 0) {
    tokens.insert(tokens.begin(), tokenizer_->bos());
  }
  if (r.limit_prompt && int64_t(tokens.size()) > config_.max_prompt_tokens) {
    return absl::InvalidArgumentError(absl::StrCat("the prompt has ", tokens.size(), " tokens; the limit is ",
                                                   config_.max_prompt_tokens, " (upload long documents with Ingest)"));
  }
  for (TokenId id : tokens) {
    if (id < 0 || id >= tokenizer_->n_vocab()) {
      return absl::InvalidArgumentError(absl::StrCat("token id ", id, " is outside the vocabulary"));
    }
  }
  if (r.session_id.empty() && tokens.empty() && r.stream == nullptr) {
    return absl::InvalidArgumentError("the prompt is empty");
  }
  return tokens;
}

Status Engine::prepare_turn(Turn& t) {
  const TurnRequest& r = t.req;
  t.input.clear();  // a turn that waited for memory comes here again
  t.recent.clear();
  if (t.ev.cancelled && t.ev.cancelled()) return absl::CancelledError("the request was cancelled");
  EDGEINF_RETURN_IF_ERROR(health());
  EDGEINF_RETURN_IF_ERROR(check_options(r));
  bool fresh = true;
  std::vector<TokenId> history;
  if (!r.session_id.empty()) {
    EDGEINF_ASSIGN_OR_RETURN(t.lease, sessions_->acquire(r.tenant, r.session_id, r.etag));
    t.ctx = t.lease.ctx;
    t.policy = t.lease.kv.name;
    t.cached = t.lease.meta.total;
    fresh = t.lease.meta.total == 0;
    if (t.lease.meta.pending >= 0) t.input.push_back(t.lease.meta.pending);
    history = t.lease.meta.recent;
  }
  EDGEINF_ASSIGN_OR_RETURN(std::vector<TokenId> tokens, turn_tokens(r, fresh));
  if (r.session_id.empty()) {
    EDGEINF_ASSIGN_OR_RETURN(t.own, sessions_->one_off(default_kv_));
    t.ctx = t.own.get();
    t.policy = default_kv_.name;
  }
  t.prompt = int64_t(tokens.size());
  t.input.insert(t.input.end(), tokens.begin(), tokens.end());
  if (t.ctx->capacity() - t.ctx->n_past() < int64_t(t.input.size())) {
    return absl::OutOfRangeError(absl::StrCat("the input has ", t.input.size(), " tokens; the session's context holds ",
                                              t.ctx->capacity() - t.ctx->n_past(), " more"));
  }
  t.decoder = std::make_unique<DecodeStep>(*tokenizer_, r.gen);
  for (TokenId id : history) t.decoder->accept(id), t.recent.push_back(id);
  for (TokenId id : tokens) t.decoder->accept(id), t.recent.push_back(id);
  while (t.recent.size() > kRecentTokens) t.recent.pop_front();
  t.next_progress = r.progress_every > 0 ? r.progress_every : 0;
  if (r.stream != nullptr) {
    t.input_complete = false;
    r.stream->attach([this] { scheduler_->wake(); });
  }
  t.prefill_start = Clock::now();
  t.decoding = t.input.empty() && t.input_complete;
  if (t.decoding) t.decode_start = t.prefill_start;
  return absl::OkStatus();
}

Status Engine::feed(std::span<StepScheduler::Job* const> jobs) {
  // The scheduler's thread feeds every step: its buffers keep their size.
  thread_local std::vector<LlamaContext*> ctxs;
  thread_local std::vector<TokenId> toks;
  ctxs.clear(), toks.clear();
  for (StepScheduler::Job* j : jobs) {
    Turn& t = static_cast<Turn&>(*j);
    ctxs.push_back(t.ctx), toks.push_back(t.feed);
  }
  const Status st = LlamaContext::eval_each(ctxs, toks);
  for (StepScheduler::Job* j : jobs) {
    Turn& t = static_cast<Turn&>(*j);
    t.feed = -1;
    t.dirty = true;
    if (!st.ok()) continue;
    t.logits = t.ctx->logits();
    t.last = -1;  // fed
  }
  return st;
}

bool Engine::pull_stream(Turn& t, Status* failed) {
  TurnInput::Taken in = t.req.stream->take(size_t(8 * t.ctx->n_batch()));
  if (!in.aborted.ok()) {
    *failed = in.aborted;
    return true;
  }
  if (t.ctx->capacity() - t.ctx->n_past() - int64_t(t.input.size() - t.fed) < int64_t(in.tokens.size())) {
    *failed = absl::OutOfRangeError(
        absl::StrCat("the document does not fit the session's context of ", t.ctx->capacity(), " tokens"));
    return true;
  }
  for (TokenId id : in.tokens) {
    if (id < 0 || id >= tokenizer_->n_vocab()) {
      *failed = absl::InvalidArgumentError(absl::StrCat("token id ", id, " is outside the vocabulary"));
      return true;
    }
    t.decoder->accept(id);
    t.recent.push_back(id);
  }
  while (t.recent.size() > kRecentTokens) t.recent.pop_front();
  t.input.insert(t.input.end(), in.tokens.begin(), in.tokens.end());
  t.prompt += int64_t(in.tokens.size());
  if (in.closed) t.input_complete = true;
  return !in.tokens.empty() || in.closed;
}

std::optional<StatusOr<TurnResult>> Engine::step_turn(Turn& t, bool* worked) {
  if (t.ev.cancelled && t.ev.cancelled())
    return StatusOr<TurnResult>(absl::CancelledError("the request was cancelled"));
  if (!t.decoding) {
    if (t.fed == t.input.size()) {  // a stream's turn that has prefilled all that arrived
      Status failed;
      if (!pull_stream(t, &failed)) return std::nullopt;
      if (!failed.ok()) return StatusOr<TurnResult>(failed);
      *worked = true;
      if (t.fed == t.input.size()) {
        t.decoding = true;  // closed, nothing more
        t.decode_start = Clock::now();
      }
    }
    if (!t.decoding) {
      const size_t n = std::min(size_t(t.ctx->n_batch()), t.input.size() - t.fed);
      t.dirty = true;
      auto logits = t.ctx->eval(std::span<const TokenId>(t.input.data() + t.fed, n));
      if (!logits.ok()) return StatusOr<TurnResult>(logits.status());
      *worked = true;
      t.logits = *logits;
      t.fed += n;
      t.prefilled += int64_t(n);
      if (t.req.stream == nullptr) {
        const int64_t done = int64_t(t.fed), total = int64_t(t.input.size());
        if (t.ev.progress && (t.req.progress_every <= 0 || done >= t.next_progress || done == total)) {
          t.ev.progress(done, total);
          while (t.req.progress_every > 0 && t.next_progress <= done) t.next_progress += t.req.progress_every;
        }
      }
      if (t.fed == t.input.size()) {
        if (t.req.stream != nullptr) t.input.clear(), t.fed = 0;  // streamed input need not be kept
        if (t.input_complete) {
          t.decoding = true;
          t.decode_start = Clock::now();
        }
      }
      return std::nullopt;
    }
  }
  *worked = true;
  TurnResult res;
  auto send = [&](DecodeStep::Token& token) {
    if ((!token.text.empty() || !token.ids.empty()) && t.ev.delta) t.ev.delta(token.text, std::move(token.ids));
  };
  auto end = [&](FinishReason why) {
    // A character cut by max_tokens is not sent as U+FFFD: its bytes go to the final event.
    if (why != FinishReason::kStopString) {
      DecodeStep::Token rest = t.decoder->flush(why == FinishReason::kLength, &res.incomplete_bytes);
      send(rest);
    }
    res.finish = why;
    return std::optional<StatusOr<TurnResult>>(std::move(res));
  };
  if (t.decoder->done()) return end(FinishReason::kLength);
  if (t.logits.empty()) return end(FinishReason::kLength);  // nothing was evaluated (empty input)
  DecodeStep::Token token = t.decoder->next(t.logits, t.ctx->n_past() < t.ctx->capacity());
  t.recent.push_back(token.id);
  if (t.recent.size() > kRecentTokens) t.recent.pop_front();
  t.last = token.id;
  // An end-of-generation token counts: it stays in the session's history.
  if (t.decoder->generated() == 1) t.first_token = Clock::now();
  if (!token.text.empty()) send(token);
  if (token.finish) return end(*token.finish);
  t.feed = token.id;  // the loop feeds every decoding turn's token in one batched pass
  return std::nullopt;
}

void Engine::end_turn(Turn& t, StatusOr<TurnResult> result) {
  const auto now = Clock::now();
  if (result.ok()) {
    TurnUsage& u = result->usage;
    u.prompt_tokens = t.prompt;
    u.cached_tokens = t.cached;
    const int generated = t.decoder->generated();
    u.generated_tokens = generated;
    const double prefill_s = seconds_between(t.prefill_start, t.decoding ? t.decode_start : now);
    const double decode_s = t.decoding ? seconds_between(t.decode_start, now) : 0;
    u.ttft_s = generated > 0 ? seconds_between(t.arrival, t.first_token) : seconds_between(t.arrival, now);
    u.prefill_tok_s = prefill_s > 0 ? double(t.prefilled) / prefill_s : 0;
    u.decode_tok_s = decode_s > 0 ? double(generated) / decode_s : 0;
    SessionMeta m;
    if (t.lease.session != nullptr) {
      // On an I/O thread (writes_on_end): the new state is durable before the final event.
      TurnCommit c;
      c.pending = t.last;
      c.recent.assign(t.recent.begin(), t.recent.end());
      const Status st = sessions_->commit(t.lease, c);
      if (st.code() == absl::StatusCode::kAborted) {
        result = absl::AbortedError(absl::StrCat("another turn on this session was committed first (", st.message(),
                                                 "); read the session and retry"));
      } else if (!st.ok()) {
        result = st;
      } else {
        m = t.lease.meta;
        result->etag = etag_of(m.version);
        result->session = SessionManager::info_of(t.lease.kv, m, model_->gguf().fingerprint());
      }
    } else {
      m.pending = t.last;
      SessionManager::count(*t.own, t.policy, &m);
      m.total = u.cached_tokens + u.prompt_tokens + u.generated_tokens;
    }
    if (result.ok()) {
      result->session_tokens = m.total;
      u.exact_tokens = m.exact;
      u.compressed_tokens = m.compressed;
      u.dropped_tokens = m.dropped;
      u.state_bytes = m.state_bytes;
    }
  }
  if (t.req.stream != nullptr) t.req.stream->detach();
  // A turn that failed after changing its context leaves it ahead of the store: drop it.
  if (t.lease.session != nullptr) sessions_->release(t.lease, result.ok() || !t.dirty);
  if (t.own != nullptr) sessions_->release_one_off(std::move(t.own));
  t.done(std::move(result));
}

}  // namespace edgeinf
