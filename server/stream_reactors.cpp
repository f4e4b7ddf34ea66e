// The streaming methods: Generate (events written one at a time as the engine queues them),
// Ingest (a document prefilled as it arrives and committed once, all or nothing), and snapshot
// export and import in chunks.
#include <spdlog/spdlog.h>

#include <atomic>
#include <deque>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "engine/api/text.h"
#include "server/reactor_sync.h"
#include "server/service.h"

namespace edgeinf::server {
namespace {

using Clock = InferenceService::Clock;

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

// A Generate request's input as the engine takes it (the engine tokenizes it).
TurnPrompt turn_prompt(const v1::GenerateRequest& req) {
  TurnPrompt p;
  switch (req.input_case()) {
    case v1::GenerateRequest::kText:
      p.kind = TurnPrompt::Kind::kText;
      p.text = req.text();
      break;
    case v1::GenerateRequest::kMessages:
      p.kind = TurnPrompt::Kind::kMessages;
      for (const v1::ChatMessage& m : req.messages().messages()) p.messages.push_back({m.role(), m.content()});
      break;
    case v1::GenerateRequest::kTokenIds:
      p.kind = TurnPrompt::Kind::kTokenIds;
      p.token_ids.assign(req.token_ids().ids().begin(), req.token_ids().ids().end());
      break;
    case v1::GenerateRequest::INPUT_NOT_SET: break;
  }
  return p;
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
  if (req.stop().max_tokens() < 0) return absl::InvalidArgumentError("stop.max_tokens must be >= 0");
  g.max_tokens = req.stop().max_tokens() > 0 ? req.stop().max_tokens() : 256;
  for (const std::string& st : req.stop().stop()) {
    if (st.empty()) return absl::InvalidArgumentError("stop strings must not be empty");
    g.stop.push_back(st);
  }
  g.ignore_eos = req.stop().ignore_eos();
  return g;
}

}  // namespace

StatusOr<TurnRequest> turn_request(const v1::GenerateRequest& req) {
  TurnRequest t;
  if (!req.session().empty()) {
    EDGEINF_ASSIGN_OR_RETURN(t.session_id, session_id_of(req.session()));
  }
  EDGEINF_ASSIGN_OR_RETURN(t.gen, generate_options(req));
  if (req.progress_every_tokens() < 0) return absl::InvalidArgumentError("progress_every_tokens must be >= 0");
  t.progress_every = req.progress_every_tokens();
  t.etag = req.etag();
  t.prompt = turn_prompt(req);
  return t;
}

namespace {

// ---- Generate -----------------------------------------------------------------------------------

// The engine queues events; this reactor writes them one at a time.
class GenerateReactor final : public OrderedReactor<grpc::ServerWriteReactor<grpc::ByteBuffer>> {
 public:
  GenerateReactor(InferenceService& svc, grpc::CallbackServerContext* ctx, const grpc::ByteBuffer& req)
      : svc_(svc), ctx_(ctx), t0_(Clock::now()) {
    svc_.begin();
    const Status st = start(req);
    if (!st.ok()) finish_now(st);
  }

  void OnWriteDone(bool ok) override {
    InCallback in(this);
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
  void OnCancel() override {
    InCallback in(this);
    cancelled_ = true;
  }

 private:
  Status start(const grpc::ByteBuffer& bytes) {
    v1::GenerateRequest req;
    EDGEINF_RETURN_IF_ERROR(parse_request(bytes, &req));
    EDGEINF_ASSIGN_OR_RETURN(std::string tenant, svc_.admit(ctx_));
    EDGEINF_ASSIGN_OR_RETURN(TurnRequest t, turn_request(req));
    t.tenant = tenant;
    TurnEvents ev;
    ev.progress = [this](int64_t done, int64_t total) {
      v1::GenerateEvent e;
      e.mutable_progress()->set_phase("prefill");
      e.mutable_progress()->set_tokens_done(done);
      e.mutable_progress()->set_tokens_total(total);
      push(e);
    };
    ev.delta = [this](std::string text, std::vector<TokenId> ids) {
      const auto now = Clock::now();
      if (n_deltas_++ > 0) svc_.metrics().inter_token(std::chrono::duration<double>(now - last_delta_).count());
      last_delta_ = now;
      v1::GenerateEvent e;
      e.mutable_delta()->set_text(std::move(text));
      for (TokenId id : ids) e.mutable_delta()->add_token_ids(id);
      push(e);
    };
    ev.cancelled = [this] {
      return cancelled_.load() || ctx_->IsCancelled() || ctx_->deadline() < std::chrono::system_clock::now();
    };
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
      Metrics& m = svc_.metrics();
      m.tokens("prompt", u.prompt_tokens);
      m.tokens("cached", u.cached_tokens);
      m.tokens("generated", u.generated_tokens);
      m.tokens("compressed", u.compressed_tokens);
      if (u.generated_tokens > 0) m.time_to_first_token(u.ttft_s);
      v1::GenerateEvent e;
      v1::Final* f = e.mutable_final();
      f->set_finish_reason(finish_of(r->finish));
      f->set_etag(r->etag);
      f->set_session_tokens(r->session_tokens);
      f->set_incomplete_bytes(r->incomplete_bytes);
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
      push(e);
    }
    std::unique_lock<std::mutex> lock(mu_);
    status_ = st;
    ended_ = true;
    drive(lock);
  }

  void push(const v1::GenerateEvent& e) {
    grpc::ByteBuffer bytes = serialize(e);
    std::unique_lock<std::mutex> lock(mu_);
    if (cancelled_) return;
    pending_.push_back(std::move(bytes));
    drive(lock);
  }

  // Takes the held lock: starts the next write, or finishes once the turn has ended and every
  // event is written. The lock is released before calling into gRPC: after Finish, OnDone may
  // delete this reactor on another thread at any moment.
  void drive(std::unique_lock<std::mutex>& lock) {
    if (writing_ || finished_) return;
    if (!pending_.empty()) {
      writing_ = true;
      const grpc::ByteBuffer* next = &pending_.front();  // deque: stable until popped
      lock.unlock();
      StartWrite(next);
      return;
    }
    if (!ended_) return;
    finished_ = true;
    const Status st = status_;
    lock.unlock();
    Finish(svc_.end(ctx_, "Generate", t0_, st));
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
  std::mutex mu_;
  std::deque<grpc::ByteBuffer> pending_;
  bool writing_ = false, ended_ = false, finished_ = false;
  std::atomic<bool> cancelled_{false};
  Status status_;
  int64_t n_deltas_ = 0;
};

// ---- Ingest -------------------------------------------------------------------------------------

// The first message submits one turn whose input streams in: the text is cut before whitespace
// (so tokens never straddle a cut), tokenized and appended as it arrives, and reading pauses while
// many tokens wait for the engine. Half-close completes the input; the turn then commits once.
// A message that cannot be parsed, a document that is not UTF-8 or a broken-off stream aborts the
// turn: nothing is committed.
class IngestReactor final : public OrderedReactor<grpc::ServerReadReactor<grpc::ByteBuffer>> {
 public:
  IngestReactor(InferenceService& svc, grpc::CallbackServerContext* ctx, grpc::ByteBuffer* resp)
      : svc_(svc), ctx_(ctx), resp_(resp), t0_(Clock::now()), input_(std::make_shared<TurnInput>()) {
    svc_.begin();
    auto tenant = svc_.admit(ctx_);
    if (!tenant.ok()) {
      end(tenant.status());
      return;
    }
    tenant_ = *tenant;
    StartRead(&buf_);
  }

  void OnReadDone(bool ok) override {
    InCallback in(this);
    if (!ok) return input_done();
    v1::IngestRequest req;
    if (Status st = parse_request(buf_, &req); !st.ok()) return fail(st);
    if (!submitted_) {
      auto id = session_id_of(req.session());
      if (!id.ok()) return end(id.status());
      submit(*id);
    } else if (!req.session().empty() && req.session() != "sessions/" + id_) {
      return fail(absl::InvalidArgumentError("only the first message may name the session"));
    }
    text_ += req.text();
    if (Status st = feed(false); !st.ok()) return fail(st);
    read_more();
  }
  void OnCancel() override {
    InCallback in(this);
    input_->abort(absl::CancelledError("the upload was cancelled"));
  }

 private:
  static constexpr size_t kCut = 64 << 10;  // text gathered before it is tokenized
  static constexpr size_t kLow = 8 << 10;   // the next message is read once fewer tokens than this wait

  void submit(const std::string& id) {
    submitted_ = true;
    id_ = id;
    TurnRequest t;
    t.tenant = tenant_;
    t.session_id = id;
    t.limit_prompt = false;  // Ingest is how documents over the prompt limit arrive
    t.stream = input_;
    t.gen.max_tokens = 0;
    t.gen.sampling.seed = 1;
    TurnEvents ev;
    ev.cancelled = [this] { return ctx_->IsCancelled(); };
    svc_.engine().submit(std::move(t), std::move(ev), [this](StatusOr<TurnResult> r) { on_done(std::move(r)); });
  }

  // Tokenizes the text gathered so far up to a safe cut (all of it at the end).
  Status feed(bool last) {
    size_t cut = text_.size();
    if (!last) {
      if (text_.size() < kCut) return absl::OkStatus();
      // Before the last whitespace: an ASCII byte, so also a character boundary.
      cut = text_.find_last_of(" \n\t\r");
      if (cut == std::string::npos || cut == 0) {
        if (text_.size() < 16 * kCut) return absl::OkStatus();
        // No whitespace in a megabyte: cut at the last character boundary instead.
        cut = text_.size();
        while (cut > 0 && (static_cast<unsigned char>(text_[cut - 1]) & 0xC0) == 0x80) --cut;
        if (cut > 0) --cut;
        if (cut == 0) return absl::InvalidArgumentError("the document is not valid UTF-8");
      }
    }
    const std::string_view piece(text_.data(), cut);
    if (!valid_utf8(piece)) {
      return absl::InvalidArgumentError(
          absl::StrCat("the document is not valid UTF-8 (within bytes ", consumed_, " to ", consumed_ + cut, ")"));
    }
    std::vector<TokenId> tokens = svc_.engine().tokenize(piece, /*parse_special=*/false);
    consumed_ += cut;
    text_.erase(0, cut);
    if (!tokens.empty()) input_->append(std::move(tokens));
    return absl::OkStatus();
  }

  void read_more() {
    input_->when_below(kLow, [this] { StartRead(&buf_); });
  }

  // The client half-closed, or the stream broke off.
  void input_done() {
    if (!submitted_) return end(absl::InvalidArgumentError("Ingest needs at least one message naming the session"));
    if (ctx_->IsCancelled()) return input_->abort(absl::CancelledError("the upload was cancelled"));
    if (Status st = feed(true); !st.ok()) return fail(st);
    input_->close();  // the turn commits once it has prefilled everything
  }

  // A bad message or document: the turn (if any) fails with `st` and commits nothing.
  void fail(const Status& st) {
    if (!submitted_) return end(st);
    input_->abort(st);  // on_done ends the call
  }

  void on_done(StatusOr<TurnResult> r) {
    if (!r.ok()) return end(r.status());
    svc_.metrics().tokens("ingested", r->usage.prompt_tokens);
    v1::IngestResponse resp;
    fill_session(r->session, resp.mutable_session());
    resp.set_ingested_tokens(r->usage.prompt_tokens);
    *resp_ = serialize(resp);
    end(absl::OkStatus());
  }

  void end(const Status& st) {
    if (ended_.exchange(true)) return;
    Finish(svc_.end(ctx_, "Ingest", t0_, st));
  }

  InferenceService& svc_;
  grpc::CallbackServerContext* ctx_;
  grpc::ByteBuffer* resp_;
  Clock::time_point t0_;
  grpc::ByteBuffer buf_;
  std::shared_ptr<TurnInput> input_;
  std::string tenant_, id_, text_;
  bool submitted_ = false;
  size_t consumed_ = 0;
  std::atomic<bool> ended_{false};
};

// ---- Export / Import ----------------------------------------------------------------------------

// The snapshot (read on the executor) in 1 MiB chunks.
class ExportReactor final : public OrderedReactor<grpc::ServerWriteReactor<grpc::ByteBuffer>> {
 public:
  ExportReactor(InferenceService& svc, grpc::CallbackServerContext* ctx, const grpc::ByteBuffer& bytes)
      : svc_(svc), ctx_(ctx), t0_(Clock::now()) {
    svc_.begin();
    v1::ExportSessionRequest req;
    Status st = parse_request(bytes, &req);
    StatusOr<std::string> tenant = st.ok() ? svc_.admit(ctx_) : StatusOr<std::string>(st);
    if (!tenant.ok()) {
      end(tenant.status());
      return;
    }
    svc_.executor().run([this, tenant = *tenant, name = req.name()] {
      Status s = [&]() -> Status {
        EDGEINF_ASSIGN_OR_RETURN(std::string id, session_id_of(name));
        EDGEINF_ASSIGN_OR_RETURN(Engine::Exported out, svc_.engine().export_session(tenant, id));
        bytes_ = std::move(out.bytes);
        hold_ = std::move(out.hold);  // counted as I/O memory until the reactor is done
        return absl::OkStatus();
      }();
      if (s.ok()) {
        next();
      } else {
        end(s);
      }
    });
  }
  void OnWriteDone(bool ok) override {
    InCallback in(this);
    if (!ok) return end(absl::CancelledError("the client went away"));
    next();
  }

 private:
  void next() {
    constexpr size_t kChunk = 1 << 20;
    if (pos_ >= bytes_.size()) return end(absl::OkStatus());
    v1::SnapshotChunk chunk;
    chunk.set_data(bytes_.substr(pos_, kChunk));
    pos_ += kChunk;
    out_ = serialize(chunk);
    StartWrite(&out_);
  }
  void end(const Status& st) { Finish(svc_.end(ctx_, "ExportSession", t0_, st)); }
  InferenceService& svc_;
  grpc::CallbackServerContext* ctx_;
  Clock::time_point t0_;
  std::string bytes_;
  IoMemory::Hold hold_;
  size_t pos_ = 0;
  grpc::ByteBuffer out_;
};

// Collects the chunks, then imports on the executor.
class ImportReactor final : public OrderedReactor<grpc::ServerReadReactor<grpc::ByteBuffer>> {
 public:
  ImportReactor(InferenceService& svc, grpc::CallbackServerContext* ctx, grpc::ByteBuffer* resp)
      : svc_(svc), ctx_(ctx), resp_(resp), t0_(Clock::now()) {
    svc_.begin();
    auto tenant = svc_.admit(ctx_);
    if (!tenant.ok()) {
      end(tenant.status());
      return;
    }
    tenant_ = *tenant;
    StartRead(&buf_);
  }
  void OnReadDone(bool ok) override {
    InCallback in(this);
    if (ok) {
      v1::SnapshotChunk chunk;
      if (Status st = parse_request(buf_, &chunk); !st.ok()) return end(st);
      // Counted as I/O memory as it grows: the bytes, then the state and the record made of them.
      const size_t need = 3 * (bytes_.size() + chunk.data().size());
      while (held_ < need) {
        constexpr size_t kStep = size_t(48) << 20;
        auto more = svc_.engine().io_memory().try_reserve(kStep);
        if (!more) {
          return end(absl::ResourceExhaustedError(
              "the server has no memory for a snapshot this large now; retry shortly (or raise --io_memory_mb)"));
        }
        holds_.push_back(std::move(*more));
        held_ += kStep;
      }
      bytes_ += chunk.data();
      StartRead(&buf_);
      return;
    }
    if (ctx_->IsCancelled()) return end(absl::CancelledError("the upload was cancelled"));
    svc_.executor().run([this] {
      Status st = [&]() -> Status {
        EDGEINF_ASSIGN_OR_RETURN(SessionInfo info, svc_.engine().import_session(tenant_, bytes_));
        v1::Session s;
        fill_session(info, &s);
        *resp_ = serialize(s);
        return absl::OkStatus();
      }();
      // A damaged snapshot is the caller's input: INVALID_ARGUMENT says so better than DATA_LOSS.
      if (st.code() == absl::StatusCode::kDataLoss) st = absl::InvalidArgumentError(st.message());
      end(st);
    });
  }

 private:
  void end(const Status& st) { Finish(svc_.end(ctx_, "ImportSession", t0_, st)); }
  InferenceService& svc_;
  grpc::CallbackServerContext* ctx_;
  grpc::ByteBuffer* resp_;
  Clock::time_point t0_;
  grpc::ByteBuffer buf_;
  std::string tenant_, bytes_;
  std::vector<IoMemory::Hold> holds_;
  size_t held_ = 0;
};

}  // namespace

grpc::ServerWriteReactor<grpc::ByteBuffer>* make_generate_reactor(InferenceService& svc,
                                                                  grpc::CallbackServerContext* ctx,
                                                                  const grpc::ByteBuffer& req) {
  return new GenerateReactor(svc, ctx, req);
}

grpc::ServerReadReactor<grpc::ByteBuffer>* make_ingest_reactor(InferenceService& svc, grpc::CallbackServerContext* ctx,
                                                               grpc::ByteBuffer* resp) {
  return new IngestReactor(svc, ctx, resp);
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* make_export_reactor(InferenceService& svc, grpc::CallbackServerContext* ctx,
                                                                const grpc::ByteBuffer& req) {
  return new ExportReactor(svc, ctx, req);
}

grpc::ServerReadReactor<grpc::ByteBuffer>* make_import_reactor(InferenceService& svc, grpc::CallbackServerContext* ctx,
                                                               grpc::ByteBuffer* resp) {
  return new ImportReactor(svc, ctx, resp);
}

}  // namespace edgeinf::server
