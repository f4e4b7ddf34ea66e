// Request conversion, streaming reactors, and the status mapping of every RPC.
#include "server/service.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/chat_template.h"
#include "engine/tokenizer/unicode.h"
#include "server/status.h"

namespace edgeinf::server {

namespace v1 = edgeinfinite::v1;
using Clock = std::chrono::steady_clock;

namespace {

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

const char* code_name(grpc::StatusCode c) {
  switch (c) {
    case grpc::OK: return "OK";
    case grpc::CANCELLED: return "CANCELLED";
    case grpc::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case grpc::DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case grpc::NOT_FOUND: return "NOT_FOUND";
    case grpc::RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case grpc::FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case grpc::ABORTED: return "ABORTED";
    case grpc::OUT_OF_RANGE: return "OUT_OF_RANGE";
    case grpc::UNAVAILABLE: return "UNAVAILABLE";
    case grpc::DATA_LOSS: return "DATA_LOSS";
    case grpc::UNAUTHENTICATED: return "UNAUTHENTICATED";
    default: return "OTHER";
  }
}

void fill_policy(const KvPolicyOptions& kv, v1::PolicyConfig* p) {
  p->set_name(kv.name);
  p->set_sink(kv.sink);
  p->set_window(kv.window);
  p->set_segment(kv.segment);
  p->set_budget(kv.budget);
  p->set_context(kv.n_ctx);
}

void fill_session(const SessionInfo& s, v1::Session* out) {
  out->set_name("sessions/" + s.id);
  fill_policy(s.kv, out->mutable_policy());
  out->set_total_tokens(s.total_tokens);
  out->set_exact_tokens(s.exact_tokens);
  out->set_compressed_tokens(s.compressed_tokens);
  out->set_dropped_tokens(s.dropped_tokens);
  out->set_state_bytes(s.state_bytes);
  out->set_model_fingerprint(s.model_fingerprint);
  out->set_create_time(s.create_time);
  out->set_update_time(s.update_time);
  out->set_etag(s.etag);
}

v1::FinishReason finish_of(FinishReason r) {
  switch (r) {
    case FinishReason::kEndOfGeneration: return v1::FINISH_REASON_STOP;
    case FinishReason::kLength: return v1::FINISH_REASON_LENGTH;
    case FinishReason::kStopString: return v1::FINISH_REASON_STOP_STRING;
    case FinishReason::kContextFull: return v1::FINISH_REASON_CONTEXT;
    case FinishReason::kCancelled: return v1::FINISH_REASON_UNSPECIFIED;
  }
  return v1::FINISH_REASON_UNSPECIFIED;
}

// The one place an RPC ends: maps the engine status, adds the retry hint to RESOURCE_EXHAUSTED,
// and counts the request by method and code with its duration.
grpc::Status end_status(grpc::CallbackServerContext* ctx, Metrics& m, const char* method, Clock::time_point t0,
                        const Status& status) {
  const grpc::Status g = to_grpc(status);
  if (status.code() == absl::StatusCode::kResourceExhausted) ctx->AddTrailingMetadata("retry-after-ms", "1000");
  m.request(method, code_name(g.error_code()));
  m.request_duration(method, since(t0));
  return g;
}

// A unary reactor that finishes at once with `status`.
grpc::ServerUnaryReactor* finish_unary(grpc::CallbackServerContext* ctx, Metrics& m, const char* method,
                                       Clock::time_point t0, const Status& status) {
  auto* r = ctx->DefaultReactor();
  r->Finish(end_status(ctx, m, method, t0, status));
  return r;
}

// The tokens of a Generate request's input.
StatusOr<std::vector<TokenId>> input_tokens(const Engine& engine, const v1::GenerateRequest& req, bool fresh) {
  const Tokenizer& tok = engine.tokenizer();
  switch (req.input_case()) {
    case v1::GenerateRequest::kText: {
      if (!unicode::is_valid_utf8(req.text())) return absl::InvalidArgumentError("text is not valid UTF-8");
      if (req.text().empty()) return absl::InvalidArgumentError("text is empty");
      return tok.encode(req.text(), /*add_special=*/fresh, /*parse_special=*/false);
    }
    case v1::GenerateRequest::kMessages: {
      std::vector<ChatMessage> msgs;
      for (const v1::ChatMessage& m : req.messages().messages()) {
        if (m.role() != "system" && m.role() != "user" && m.role() != "assistant") {
          return absl::InvalidArgumentError(absl::StrCat("messages: unknown role '", m.role(),
                                                         "' (system, user, assistant)"));
        }
        if (!unicode::is_valid_utf8(m.content())) return absl::InvalidArgumentError("messages: content is not valid UTF-8");
        msgs.push_back({m.role(), m.content()});
      }
      if (msgs.empty()) return absl::InvalidArgumentError("messages is empty");
      EDGEINF_ASSIGN_OR_RETURN(ChatTemplate tmpl, detect_chat_template(tok.chat_template()));
      // A later turn of a session: the conversation already opened (with its default system
      // message, if the template has one), and ChatML continues on the line after the previous
      // answer's end-of-turn token.
      if (!fresh) tmpl.default_system.clear();
      std::string text = render_chat(tmpl, msgs, true);
      if (!fresh && tmpl.format == ChatFormat::kChatMl) text = "\n" + text;
      return tok.encode(text, /*add_special=*/fresh, /*parse_special=*/true);
    }
    case v1::GenerateRequest::kTokenIds:
      return std::vector<TokenId>(req.token_ids().ids().begin(), req.token_ids().ids().end());
    case v1::GenerateRequest::INPUT_NOT_SET:
      break;
  }
  return absl::InvalidArgumentError("input is missing: set text, messages or token_ids");
}

StatusOr<GenerateOptions> generate_options(const v1::GenerateRequest& req) {
  GenerateOptions g;
  const v1::SamplingParams& s = req.sampling();
  if (s.has_temperature()) g.sampling.temperature = s.temperature();
  if (s.has_top_k()) g.sampling.top_k = s.top_k();
  if (s.has_top_p()) g.sampling.top_p = s.top_p();
  if (s.has_min_p()) g.sampling.min_p = s.min_p();
  if (s.has_repetition_penalty()) g.sampling.repeat_penalty = s.repetition_penalty();
  g.sampling.seed = s.has_seed() ? s.seed() : std::random_device{}();
  g.max_tokens = req.stop().max_tokens() > 0 ? req.stop().max_tokens() : 256;
  if (req.stop().max_tokens() < 0) return absl::InvalidArgumentError("stop.max_tokens must be >= 0");
  for (const std::string& st : req.stop().stop()) {
    if (st.empty()) return absl::InvalidArgumentError("stop strings must not be empty");
    g.stop.push_back(st);
  }
  g.ignore_eos = req.stop().ignore_eos();
  EDGEINF_RETURN_IF_ERROR(validate(g.sampling));
  return g;
}

// Generate: the engine thread queues events; this reactor writes them one at a time.
class GenerateReactor final : public grpc::ServerWriteReactor<v1::GenerateEvent> {
 public:
  GenerateReactor(InferenceService& svc, grpc::CallbackServerContext* ctx, const v1::GenerateRequest& req)
      : svc_(svc), ctx_(ctx), t0_(Clock::now()) {
    Status st = start(req);
    if (!st.ok()) finish_now(st);
  }

  void OnWriteDone(bool ok) override {
    std::unique_lock<std::mutex> lock(mu_);
    writing_ = false;
    if (!ok) {
      cancelled_ = true;  // the client is gone; the engine stops at its next step
      pending_.clear();
    } else if (!pending_.empty()) {
      pending_.pop_front();
    }
    drive(lock);
  }
  void OnCancel() override { cancelled_ = true; }
  void OnDone() override { delete this; }

 private:
  Status start(const v1::GenerateRequest& req) {
    EDGEINF_ASSIGN_OR_RETURN(tenant_, svc_.tenant(ctx_));
    TurnRequest t;
    t.tenant = tenant_;
    if (!req.session().empty()) {
      EDGEINF_ASSIGN_OR_RETURN(t.session_id, session_id_of(req.session()));
    }
    bool fresh = true;
    if (!t.session_id.empty()) {
      EDGEINF_ASSIGN_OR_RETURN(SessionInfo info, svc_.engine().get_session(tenant_, t.session_id));
      fresh = info.total_tokens == 0;
    }
    EDGEINF_ASSIGN_OR_RETURN(t.tokens, input_tokens(svc_.engine(), req, fresh));
    if (int64_t(t.tokens.size()) > svc_.engine().config().max_prompt_tokens) {
      return absl::InvalidArgumentError(absl::StrCat("the prompt has ", t.tokens.size(), " tokens; the limit is ",
                                                     svc_.engine().config().max_prompt_tokens,
                                                     " (upload long documents with Ingest)"));
    }
    EDGEINF_ASSIGN_OR_RETURN(t.gen, generate_options(req));
    if (req.progress_every_tokens() < 0) return absl::InvalidArgumentError("progress_every_tokens must be >= 0");
    t.progress_every = req.progress_every_tokens();
    t.etag = req.etag();
    TurnEvents ev;
    ev.progress = [this](int64_t done, int64_t total) {
      v1::GenerateEvent e;
      e.mutable_progress()->set_phase("prefill");
      e.mutable_progress()->set_tokens_done(done);
      e.mutable_progress()->set_tokens_total(total);
      push(std::move(e));
    };
    ev.delta = [this](std::string text, std::vector<TokenId> ids) {
      const auto now = Clock::now();
      if (n_deltas_++ > 0) svc_.metrics().inter_token(std::chrono::duration<double>(now - last_delta_).count());
      last_delta_ = now;
      v1::GenerateEvent e;
      e.mutable_delta()->set_text(std::move(text));
      for (TokenId id : ids) e.mutable_delta()->add_token_ids(id);
      push(std::move(e));
    };
    ev.cancelled = [this] { return cancelled_.load() || ctx_->IsCancelled() || ctx_->deadline() < std::chrono::system_clock::now(); };
    svc_.engine().submit(std::move(t), std::move(ev), [this](StatusOr<TurnResult> r) { on_done(std::move(r)); });
    return absl::OkStatus();
  }

  void on_done(StatusOr<TurnResult> r) {
    Status st = r.status();
    if (st.code() == absl::StatusCode::kCancelled && ctx_->deadline() < std::chrono::system_clock::now()) {
      st = absl::DeadlineExceededError("the deadline passed during generation");
    }
    if (r.ok()) {
      const TurnUsage& u = r->usage;
      svc_.metrics().tokens(u.prompt_tokens, u.cached_tokens, u.generated_tokens, u.compressed_tokens);
      if (u.generated_tokens > 0) svc_.metrics().time_to_first_token(u.ttft_s);
      v1::GenerateEvent e;
      v1::Final* f = e.mutable_final();
      f->set_finish_reason(finish_of(r->finish));
      f->set_etag(r->etag);
      f->set_session_tokens(r->session_tokens);
      v1::Usage* usage = f->mutable_usage();
      usage->set_prompt_tokens(u.prompt_tokens);
      usage->set_cached_tokens(u.cached_tokens);
      usage->set_generated_tokens(u.generated_tokens);
      usage->set_exact_tokens(u.exact_tokens);
      usage->set_compressed_tokens(u.compressed_tokens);
      usage->set_dropped_tokens(u.dropped_tokens);
      usage->set_state_bytes(u.state_bytes);
      usage->set_time_to_first_token_s(u.ttft_s);
      usage->set_prefill_tokens_per_s(u.prefill_tok_s);
      usage->set_decode_tokens_per_s(u.decode_tok_s);
      push(std::move(e));
    }
    std::unique_lock<std::mutex> lock(mu_);
    status_ = st;
    ended_ = true;
    drive(lock);
  }

  void push(v1::GenerateEvent e) {
    std::unique_lock<std::mutex> lock(mu_);
    if (cancelled_) return;
    pending_.push_back(std::move(e));
    drive(lock);
  }

  // Takes the held lock: starts the next write, or finishes once the turn has ended and every
  // event is written. The lock is released before calling into gRPC: after Finish, OnDone may
  // delete this reactor on another thread at any moment.
  void drive(std::unique_lock<std::mutex>& lock) {
    if (writing_ || finished_) return;
    if (!pending_.empty()) {
      writing_ = true;
      const v1::GenerateEvent* next = &pending_.front();  // deque: stable until popped
      lock.unlock();
      StartWrite(next);
      return;
    }
    if (!ended_) return;
    finished_ = true;
    const Status st = status_;
    lock.unlock();
    Finish(end_status(ctx_, svc_.metrics(), "Generate", t0_, st));
  }

  void finish_now(const Status& st) {
    std::unique_lock<std::mutex> lock(mu_);
    status_ = st;
    ended_ = true;
    drive(lock);
  }

  InferenceService& svc_;
  grpc::CallbackServerContext* ctx_;
  Clock::time_point t0_, last_delta_;
  std::string tenant_;
  std::mutex mu_;
  std::deque<v1::GenerateEvent> pending_;
  bool writing_ = false, ended_ = false, finished_ = false;
  std::atomic<bool> cancelled_{false};
  Status status_;
  int64_t n_deltas_ = 0;
};

// Ingest: reads chunks, prefills whole-word prefixes as turns of max_tokens 0, one at a time.
class IngestReactor final : public grpc::ServerReadReactor<v1::IngestRequest> {
 public:
  IngestReactor(InferenceService& svc, grpc::CallbackServerContext* ctx, v1::IngestResponse* resp)
      : svc_(svc), ctx_(ctx), resp_(resp), t0_(Clock::now()) {
    auto tenant = svc_.tenant(ctx_);
    if (!tenant.ok()) {
      end(tenant.status());
      return;
    }
    tenant_ = *tenant;
    StartRead(&req_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the client finished sending
      flush(true);
      return;
    }
    if (first_) {
      first_ = false;
      auto id = session_id_of(req_.session());
      if (!id.ok()) return end(id.status());
      auto info = svc_.engine().get_session(tenant_, *id);
      if (!info.ok()) return end(info.status());
      id_ = *id;
      fresh_ = info->total_tokens == 0;
    } else if (!req_.session().empty() && req_.session() != "sessions/" + id_) {
      return end(absl::InvalidArgumentError("only the first message may name the session"));
    }
    if (int64_t(req_.ByteSizeLong()) > svc_.limits().max_message_bytes) {
      return end(absl::InvalidArgumentError("message too large"));
    }
    buffer_ += req_.text();
    flush(false);
  }
  void OnCancel() override { cancelled_ = true; }
  void OnDone() override { delete this; }

 private:
  // Submits the buffered text up to a safe split (before the last space, whole UTF-8 characters),
  // or all of it at the end; reads on once the turn is done.
  void flush(bool last) {
    constexpr size_t kBlock = 128 << 10;  // ~32K tokens a turn: one snapshot commit per block
    size_t cut = buffer_.size();
    if (!last) {
      if (buffer_.size() < kBlock) {
        StartRead(&req_);
        return;
      }
      cut = buffer_.find_last_of(" \n");
      if (cut == std::string::npos || cut == 0) {
        StartRead(&req_);
        return;
      }
    }
    const std::string text = buffer_.substr(0, cut);
    buffer_.erase(0, cut);
    if (!unicode::is_valid_utf8(text)) return end(absl::InvalidArgumentError("the document is not valid UTF-8"));
    if (text.empty()) {
      if (last) return done_all();
      StartRead(&req_);
      return;
    }
    TurnRequest t;
    t.tenant = tenant_;
    t.session_id = id_;
    t.tokens = svc_.engine().tokenizer().encode(text, fresh_, false);
    fresh_ = false;
    t.gen.max_tokens = 0;
    t.gen.sampling.seed = 1;
    ingested_ += int64_t(t.tokens.size());
    TurnEvents ev;
    ev.cancelled = [this] { return cancelled_.load() || ctx_->IsCancelled(); };
    svc_.engine().submit(std::move(t), std::move(ev), [this, last](StatusOr<TurnResult> r) {
      if (!r.ok()) return end(r.status());
      if (last) return done_all();
      StartRead(&req_);
    });
  }

  void done_all() {
    auto info = svc_.engine().get_session(tenant_, id_);
    if (!info.ok()) return end(info.status());
    fill_session(*info, resp_->mutable_session());
    resp_->set_ingested_tokens(ingested_);
    end(absl::OkStatus());
  }

  void end(const Status& st) { Finish(end_status(ctx_, svc_.metrics(), "Ingest", t0_, st)); }

  InferenceService& svc_;
  grpc::CallbackServerContext* ctx_;
  v1::IngestResponse* resp_;
  Clock::time_point t0_;
  v1::IngestRequest req_;
  std::string tenant_, id_, buffer_;
  bool first_ = true, fresh_ = true;
  int64_t ingested_ = 0;
  std::atomic<bool> cancelled_{false};
};

// ExportSession: the snapshot in 1 MiB chunks.
class ExportReactor final : public grpc::ServerWriteReactor<v1::SnapshotChunk> {
 public:
  ExportReactor(InferenceService& svc, grpc::CallbackServerContext* ctx, const v1::ExportSessionRequest& req)
      : svc_(svc), ctx_(ctx), t0_(Clock::now()) {
    Status st = [&]() -> Status {
      EDGEINF_ASSIGN_OR_RETURN(std::string tenant, svc_.tenant(ctx));
      EDGEINF_ASSIGN_OR_RETURN(std::string id, session_id_of(req.name()));
      EDGEINF_ASSIGN_OR_RETURN(bytes_, svc_.engine().export_session(tenant, id));
      return absl::OkStatus();
    }();
    if (st.ok()) {
      next();
    } else {
      end(st);
    }
  }
  void OnWriteDone(bool ok) override {
    if (!ok) return end(absl::CancelledError("the client went away"));
    next();
  }
  void OnDone() override { delete this; }

 private:
  void next() {
    constexpr size_t kChunk = 1 << 20;
    if (pos_ >= bytes_.size()) return end(absl::OkStatus());
    chunk_.set_data(bytes_.substr(pos_, kChunk));
    pos_ += kChunk;
    StartWrite(&chunk_);
  }
  void end(const Status& st) { Finish(end_status(ctx_, svc_.metrics(), "ExportSession", t0_, st)); }
  InferenceService& svc_;
  grpc::CallbackServerContext* ctx_;
  Clock::time_point t0_;
  std::string bytes_;
  size_t pos_ = 0;
  v1::SnapshotChunk chunk_;
};

// ImportSession: collects the chunks, then imports.
class ImportReactor final : public grpc::ServerReadReactor<v1::SnapshotChunk> {
 public:
  ImportReactor(InferenceService& svc, grpc::CallbackServerContext* ctx, v1::Session* resp)
      : svc_(svc), ctx_(ctx), resp_(resp), t0_(Clock::now()) {
    StartRead(&chunk_);
  }
  void OnReadDone(bool ok) override {
    if (ok) {
      bytes_ += chunk_.data();
      if (bytes_.size() > (size_t(4) << 30)) return end(absl::InvalidArgumentError("snapshot too large"));
      StartRead(&chunk_);
      return;
    }
    Status st = [&]() -> Status {
      EDGEINF_ASSIGN_OR_RETURN(std::string tenant, svc_.tenant(ctx_));
      EDGEINF_ASSIGN_OR_RETURN(SessionInfo info, svc_.engine().import_session(tenant, bytes_));
      fill_session(info, resp_);
      return absl::OkStatus();
    }();
    // A damaged snapshot is the caller's input: INVALID_ARGUMENT says so better than DATA_LOSS.
    if (st.code() == absl::StatusCode::kDataLoss) st = absl::InvalidArgumentError(st.message());
    end(st);
  }
  void OnDone() override { delete this; }

 private:
  void end(const Status& st) { Finish(end_status(ctx_, svc_.metrics(), "ImportSession", t0_, st)); }
  InferenceService& svc_;
  grpc::CallbackServerContext* ctx_;
  v1::Session* resp_;
  Clock::time_point t0_;
  v1::SnapshotChunk chunk_;
  std::string bytes_;
};

}  // namespace

StatusOr<std::string> session_id_of(const std::string& name) {
  constexpr std::string_view kPrefix = "sessions/";
  if (name.compare(0, kPrefix.size(), kPrefix) != 0 || name.size() == kPrefix.size()) {
    return absl::InvalidArgumentError(absl::StrCat("session name '", name, "' is not of the form sessions/{id}"));
  }
  return name.substr(kPrefix.size());
}

InferenceService::InferenceService(Engine& engine, const Auth& auth, Metrics& metrics, ServiceLimits limits)
    : engine_(engine), auth_(auth), metrics_(metrics), limits_(limits) {}

StatusOr<std::string> InferenceService::tenant(grpc::CallbackServerContext* ctx) const {
  if (!auth_.enabled()) return std::string();
  const auto& md = ctx->client_metadata();
  auto it = md.find("authorization");
  return auth_.tenant_of(it == md.end() ? std::string() : std::string(it->second.data(), it->second.size()));
}

grpc::ServerWriteReactor<v1::GenerateEvent>* InferenceService::Generate(grpc::CallbackServerContext* ctx,
                                                                         const v1::GenerateRequest* req) {
  return new GenerateReactor(*this, ctx, *req);
}

grpc::ServerReadReactor<v1::IngestRequest>* InferenceService::Ingest(grpc::CallbackServerContext* ctx,
                                                                     v1::IngestResponse* resp) {
  return new IngestReactor(*this, ctx, resp);
}

grpc::ServerUnaryReactor* InferenceService::CreateSession(grpc::CallbackServerContext* ctx,
                                                          const v1::CreateSessionRequest* req, v1::Session* resp) {
  const auto t0 = Clock::now();
  Status st = [&]() -> Status {
    EDGEINF_ASSIGN_OR_RETURN(std::string tenant, this->tenant(ctx));
    const v1::PolicyConfig& p = req->policy();
    if (p.sink() < 0 || p.window() < 0 || p.segment() < 0 || p.budget() < 0 || p.context() < 0) {
      return absl::InvalidArgumentError("policy sizes must be >= 0");
    }
    KvShapeRequest shape;
    if (p.sink() > 0) shape.sink = p.sink();
    if (p.window() > 0) shape.window = p.window();
    if (p.segment() > 0) shape.segment = p.segment();
    EDGEINF_ASSIGN_OR_RETURN(SessionInfo info, engine_.create_session(tenant, p.name(), shape));
    fill_session(info, resp);
    return absl::OkStatus();
  }();
  return finish_unary(ctx, metrics_, "CreateSession", t0, st);
}

grpc::ServerUnaryReactor* InferenceService::GetSession(grpc::CallbackServerContext* ctx,
                                                       const v1::GetSessionRequest* req, v1::Session* resp) {
  const auto t0 = Clock::now();
  Status st = [&]() -> Status {
    EDGEINF_ASSIGN_OR_RETURN(std::string tenant, this->tenant(ctx));
    EDGEINF_ASSIGN_OR_RETURN(std::string id, session_id_of(req->name()));
    EDGEINF_ASSIGN_OR_RETURN(SessionInfo info, engine_.get_session(tenant, id));
    fill_session(info, resp);
    return absl::OkStatus();
  }();
  return finish_unary(ctx, metrics_, "GetSession", t0, st);
}

grpc::ServerUnaryReactor* InferenceService::ListSessions(grpc::CallbackServerContext* ctx,
                                                         const v1::ListSessionsRequest* req,
                                                         v1::ListSessionsResponse* resp) {
  const auto t0 = Clock::now();
  Status st = [&]() -> Status {
    EDGEINF_ASSIGN_OR_RETURN(std::string tenant, this->tenant(ctx));
    if (req->page_size() < 0) return absl::InvalidArgumentError("page_size must be >= 0");
    const size_t page = size_t(req->page_size() == 0 ? 50 : std::min(req->page_size(), 1000));
    EDGEINF_ASSIGN_OR_RETURN(std::vector<SessionInfo> all, engine_.list_sessions(tenant));
    // The page token is the last id of the previous page (ids sort the listing).
    size_t i = 0;
    if (!req->page_token().empty()) {
      while (i < all.size() && all[i].id <= req->page_token()) ++i;
    }
    for (size_t n = 0; i < all.size() && n < page; ++i, ++n) fill_session(all[i], resp->add_sessions());
    if (i < all.size()) resp->set_next_page_token(all[i - 1].id);
    return absl::OkStatus();
  }();
  return finish_unary(ctx, metrics_, "ListSessions", t0, st);
}

grpc::ServerUnaryReactor* InferenceService::DeleteSession(grpc::CallbackServerContext* ctx,
                                                          const v1::DeleteSessionRequest* req,
                                                          v1::DeleteSessionResponse*) {
  const auto t0 = Clock::now();
  Status st = [&]() -> Status {
    EDGEINF_ASSIGN_OR_RETURN(std::string tenant, this->tenant(ctx));
    EDGEINF_ASSIGN_OR_RETURN(std::string id, session_id_of(req->name()));
    return engine_.delete_session(tenant, id);
  }();
  return finish_unary(ctx, metrics_, "DeleteSession", t0, st);
}

grpc::ServerWriteReactor<v1::SnapshotChunk>* InferenceService::ExportSession(grpc::CallbackServerContext* ctx,
                                                                             const v1::ExportSessionRequest* req) {
  return new ExportReactor(*this, ctx, *req);
}

grpc::ServerReadReactor<v1::SnapshotChunk>* InferenceService::ImportSession(grpc::CallbackServerContext* ctx,
                                                                            v1::Session* resp) {
  return new ImportReactor(*this, ctx, resp);
}

grpc::ServerUnaryReactor* InferenceService::Tokenize(grpc::CallbackServerContext* ctx, const v1::TokenizeRequest* req,
                                                     v1::TokenizeResponse* resp) {
  const auto t0 = Clock::now();
  Status st = [&]() -> Status {
    EDGEINF_RETURN_IF_ERROR(this->tenant(ctx).status());
    if (!unicode::is_valid_utf8(req->text())) return absl::InvalidArgumentError("text is not valid UTF-8");
    for (TokenId id : engine_.tokenizer().encode(req->text(), false, req->parse_special())) resp->add_ids(id);
    return absl::OkStatus();
  }();
  return finish_unary(ctx, metrics_, "Tokenize", t0, st);
}

grpc::ServerUnaryReactor* InferenceService::GetServerInfo(grpc::CallbackServerContext* ctx,
                                                          const v1::GetServerInfoRequest*, v1::ServerInfo* resp) {
  const auto t0 = Clock::now();
  Status st = [&]() -> Status {
    EDGEINF_RETURN_IF_ERROR(this->tenant(ctx).status());
    const LlamaConfig& c = engine_.model().config();
    resp->set_model_name(c.name);
    resp->set_model_fingerprint(engine_.model().gguf().fingerprint());
    resp->set_native_context(c.n_ctx_train);
    for (const std::string& p : kv_policy_names()) resp->add_policies(p);
    fill_policy(engine_.default_kv(), resp->mutable_default_policy());
    if (const MemoryGate* g = engine_.gate()) {
      resp->set_gate(absl::StrCat(gate_kind_name(g->config().kind), " (calibration ",
                                  g->config().calibration_hash.substr(0, 16), ")"));
    }
    resp->set_max_message_bytes(limits_.max_message_bytes);
    resp->set_max_prompt_tokens(engine_.config().max_prompt_tokens);
    resp->set_max_tokens_limit(engine_.config().max_tokens_limit);
    resp->set_max_sessions_per_tenant(engine_.config().max_sessions_per_tenant);
    resp->set_device(device_label(engine_.backend()));
    return absl::OkStatus();
  }();
  return finish_unary(ctx, metrics_, "GetServerInfo", t0, st);
}

}  // namespace edgeinf::server
