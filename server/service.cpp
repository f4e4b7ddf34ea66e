// The service's unary methods, the status mapping every method ends through, and the conversions
// shared with the streaming reactors (stream_reactors.cpp).
#include "server/service.h"

#include "absl/strings/str_cat.h"
#include "engine/api/text.h"
#include "server/status.h"

namespace edgeinf::server {
namespace {

double since(InferenceService::Clock::time_point t0) {
  return std::chrono::duration<double>(InferenceService::Clock::now() - t0).count();
}

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
  p->set_kv_type(kv_type_name(kv.kv_type));
}

}  // namespace

StatusOr<std::string> session_id_of(const std::string& name) {
  constexpr std::string_view kPrefix = "sessions/";
  if (name.compare(0, kPrefix.size(), kPrefix) != 0 || name.size() == kPrefix.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("session name ", quoted_name(name), " is not of the form sessions/{id}"));
  }
  return name.substr(kPrefix.size());
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
  out->set_damage(s.damage);
}

InferenceService::InferenceService(Engine& engine, const Auth& auth, Metrics& metrics, ServiceLimits limits)
    : engine_(engine), auth_(auth), metrics_(metrics), limits_(limits), executor_(limits.executor_threads) {}

StatusOr<std::string> InferenceService::admit(grpc::CallbackServerContext* ctx) const {
  if (draining_) return absl::UnavailableError("the server is shutting down; retry on another replica");
  if (!auth_.enabled()) return std::string();
  const auto& md = ctx->client_metadata();
  auto it = md.find("authorization");
  return auth_.tenant_of(it == md.end() ? std::string() : std::string(it->second.data(), it->second.size()));
}

grpc::Status InferenceService::end(grpc::CallbackServerContext* ctx, const char* method, Clock::time_point t0,
                                   const Status& status) {
  const grpc::Status g = to_grpc(status);
  if (status.code() == absl::StatusCode::kResourceExhausted || status.code() == absl::StatusCode::kUnavailable) {
    ctx->AddTrailingMetadata("retry-after-ms", "1000");
  }
  metrics_.request(method, code_name(g.error_code()));
  metrics_.request_duration(method, since(t0));
  --in_flight_;
  return g;
}

template <typename Req, typename Resp, typename Fn>
grpc::ServerUnaryReactor* InferenceService::unary(grpc::CallbackServerContext* ctx, const char* method,
                                                  const grpc::ByteBuffer* req_bytes, grpc::ByteBuffer* resp_bytes,
                                                  Fn fn) {
  const auto t0 = Clock::now();
  begin();
  auto* reactor = ctx->DefaultReactor();
  auto req = std::make_shared<Req>();
  Status st = parse_request(*req_bytes, req.get());
  StatusOr<std::string> tenant = st.ok() ? admit(ctx) : StatusOr<std::string>(st);
  if (!tenant.ok()) {
    reactor->Finish(end(ctx, method, t0, tenant.status()));
    return reactor;
  }
  executor_.run([this, ctx, method, t0, reactor, req, resp_bytes, fn, who = *tenant] {
    Resp resp;
    const Status s = fn(who, *req, &resp);
    if (s.ok()) *resp_bytes = serialize(resp);
    reactor->Finish(end(ctx, method, t0, s));
  });
  return reactor;
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* InferenceService::Generate(grpc::CallbackServerContext* ctx,
                                                                       const grpc::ByteBuffer* req) {
  return make_generate_reactor(*this, ctx, *req);
}

grpc::ServerReadReactor<grpc::ByteBuffer>* InferenceService::Ingest(grpc::CallbackServerContext* ctx,
                                                                    grpc::ByteBuffer* resp) {
  return make_ingest_reactor(*this, ctx, resp);
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* InferenceService::ExportSession(grpc::CallbackServerContext* ctx,
                                                                            const grpc::ByteBuffer* req) {
  return make_export_reactor(*this, ctx, *req);
}

grpc::ServerReadReactor<grpc::ByteBuffer>* InferenceService::ImportSession(grpc::CallbackServerContext* ctx,
                                                                           grpc::ByteBuffer* resp) {
  return make_import_reactor(*this, ctx, resp);
}

grpc::ServerUnaryReactor* InferenceService::CreateSession(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* req,
                                                          grpc::ByteBuffer* resp) {
  return unary<v1::CreateSessionRequest, v1::Session>(
      ctx, "CreateSession", req, resp,
      [this](const std::string& tenant, const v1::CreateSessionRequest& r, v1::Session* out) -> Status {
        const v1::PolicyConfig& p = r.policy();
        if (p.sink() < 0 || p.window() < 0 || p.segment() < 0 || p.budget() < 0 || p.context() < 0) {
          return absl::InvalidArgumentError("policy sizes must be >= 0");
        }
        KvShapeRequest shape;
        if (p.sink() > 0) shape.sink = p.sink();
        if (p.window() > 0) shape.window = p.window();
        if (p.segment() > 0) shape.segment = p.segment();
        shape.kv_type = p.kv_type();
        EDGEINF_ASSIGN_OR_RETURN(SessionInfo info,
                                 engine_.create_session(tenant, p.name(), shape, p.budget(), p.context()));
        fill_session(info, out);
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* InferenceService::GetSession(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* req,
                                                       grpc::ByteBuffer* resp) {
  return unary<v1::GetSessionRequest, v1::Session>(
      ctx, "GetSession", req, resp,
      [this](const std::string& tenant, const v1::GetSessionRequest& r, v1::Session* out) -> Status {
        EDGEINF_ASSIGN_OR_RETURN(std::string id, session_id_of(r.name()));
        EDGEINF_ASSIGN_OR_RETURN(SessionInfo info, engine_.get_session(tenant, id));
        fill_session(info, out);
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* InferenceService::ListSessions(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* req,
                                                         grpc::ByteBuffer* resp) {
  return unary<v1::ListSessionsRequest, v1::ListSessionsResponse>(
      ctx, "ListSessions", req, resp,
      [this](const std::string& tenant, const v1::ListSessionsRequest& r, v1::ListSessionsResponse* out) -> Status {
        if (r.page_size() < 0) return absl::InvalidArgumentError("page_size must be >= 0");
        // The page token is the last id of the previous page (ids sort the listing).
        if (!r.page_token().empty() && !valid_session_id(r.page_token())) {
          return absl::InvalidArgumentError("page_token is not one this server gave");
        }
        const size_t page = size_t(r.page_size() == 0 ? 50 : std::min(r.page_size(), 1000));
        EDGEINF_ASSIGN_OR_RETURN(std::vector<SessionInfo> all, engine_.list_sessions(tenant));
        size_t i = 0;
        if (!r.page_token().empty()) {
          while (i < all.size() && all[i].id <= r.page_token()) ++i;
        }
        for (size_t n = 0; i < all.size() && n < page; ++i, ++n) fill_session(all[i], out->add_sessions());
        if (i < all.size()) out->set_next_page_token(all[i - 1].id);
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* InferenceService::DeleteSession(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* req,
                                                          grpc::ByteBuffer* resp) {
  return unary<v1::DeleteSessionRequest, v1::DeleteSessionResponse>(
      ctx, "DeleteSession", req, resp,
      [this](const std::string& tenant, const v1::DeleteSessionRequest& r, v1::DeleteSessionResponse*) -> Status {
        EDGEINF_ASSIGN_OR_RETURN(std::string id, session_id_of(r.name()));
        return engine_.delete_session(tenant, id);
      });
}

grpc::ServerUnaryReactor* InferenceService::Tokenize(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* req,
                                                     grpc::ByteBuffer* resp) {
  return unary<v1::TokenizeRequest, v1::TokenizeResponse>(
      ctx, "Tokenize", req, resp,
      [this](const std::string&, const v1::TokenizeRequest& r, v1::TokenizeResponse* out) -> Status {
        for (TokenId id : engine_.tokenize(r.text(), r.parse_special())) out->add_ids(id);
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* InferenceService::GetServerInfo(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* req,
                                                          grpc::ByteBuffer* resp) {
  return unary<v1::GetServerInfoRequest, v1::ServerInfo>(
      ctx, "GetServerInfo", req, resp,
      [this](const std::string&, const v1::GetServerInfoRequest&, v1::ServerInfo* out) -> Status {
        const EngineInfo info = engine_.info();
        out->set_model_name(info.model_name);
        out->set_model_fingerprint(info.model_fingerprint);
        out->set_native_context(info.native_context);
        for (const std::string& p : info.policies) out->add_policies(p);
        fill_policy(info.default_kv, out->mutable_default_policy());
        if (!info.gate.empty()) out->set_gate(info.gate);
        out->set_max_message_bytes(limits_.max_message_bytes);
        out->set_max_prompt_tokens(engine_.config().max_prompt_tokens);
        out->set_max_tokens_limit(engine_.config().max_tokens_limit);
        out->set_max_sessions_per_tenant(engine_.config().max_sessions_per_tenant);
        out->set_device(info.device);
        return absl::OkStatus();
      });
}

}  // namespace edgeinf::server
