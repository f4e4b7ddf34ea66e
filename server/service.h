// The edgeinfinite.v1.Inference service on gRPC's callback API: proto in, engine API, proto out.
// Every method takes its request as bytes and parses it here (a request that cannot be parsed is
// INVALID_ARGUMENT saying why), and every status leaves through end_status (the one mapping).
// Calls that wait on the session store run on the service's executor, never on gRPC's threads.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>

#include "edgeinfinite/v1/inference.grpc.pb.h"
#include "engine/api/engine.h"
#include "server/auth.h"
#include "server/metrics.h"
#include "server/rpc_util.h"

namespace edgeinf::server {

struct ServiceLimits {
  int64_t max_message_bytes = 4 << 20;
  int executor_threads = 4;  // concurrent store-bound unary calls (sessions, export, import)
};

namespace v1 = edgeinfinite::v1;

using RawInferenceService = v1::Inference::WithRawCallbackMethod_Generate<
    v1::Inference::WithRawCallbackMethod_Ingest<v1::Inference::WithRawCallbackMethod_CreateSession<
        v1::Inference::WithRawCallbackMethod_GetSession<v1::Inference::WithRawCallbackMethod_ListSessions<
            v1::Inference::WithRawCallbackMethod_DeleteSession<v1::Inference::WithRawCallbackMethod_ExportSession<
                v1::Inference::WithRawCallbackMethod_ImportSession<v1::Inference::WithRawCallbackMethod_Tokenize<
                    v1::Inference::WithRawCallbackMethod_GetServerInfo<v1::Inference::Service>>>>>>>>>>;

class InferenceService final : public RawInferenceService {
 public:
  using Clock = std::chrono::steady_clock;

  InferenceService(Engine& engine, const Auth& auth, Metrics& metrics, ServiceLimits limits);

  grpc::ServerWriteReactor<grpc::ByteBuffer>* Generate(grpc::CallbackServerContext* ctx,
                                                       const grpc::ByteBuffer* req) override;
  grpc::ServerReadReactor<grpc::ByteBuffer>* Ingest(grpc::CallbackServerContext* ctx, grpc::ByteBuffer* resp) override;
  grpc::ServerUnaryReactor* CreateSession(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* req,
                                          grpc::ByteBuffer* resp) override;
  grpc::ServerUnaryReactor* GetSession(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* req,
                                       grpc::ByteBuffer* resp) override;
  grpc::ServerUnaryReactor* ListSessions(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* req,
                                         grpc::ByteBuffer* resp) override;
  grpc::ServerUnaryReactor* DeleteSession(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* req,
                                          grpc::ByteBuffer* resp) override;
  grpc::ServerWriteReactor<grpc::ByteBuffer>* ExportSession(grpc::CallbackServerContext* ctx,
                                                            const grpc::ByteBuffer* req) override;
  grpc::ServerReadReactor<grpc::ByteBuffer>* ImportSession(grpc::CallbackServerContext* ctx,
                                                           grpc::ByteBuffer* resp) override;
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* req,
                                     grpc::ByteBuffer* resp) override;
  grpc::ServerUnaryReactor* GetServerInfo(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* req,
                                          grpc::ByteBuffer* resp) override;

  // Draining (SIGTERM): new calls are refused with UNAVAILABLE; the running ones go on.
  void set_draining() { draining_ = true; }
  // Calls begun and not yet ended.
  int in_flight() const { return in_flight_.load(); }

  // For the reactors.
  Engine& engine() { return engine_; }
  Metrics& metrics() { return metrics_; }
  const ServiceLimits& limits() const { return limits_; }
  Executor& executor() { return executor_; }
  // The caller's tenant from its metadata; Unavailable while draining.
  StatusOr<std::string> admit(grpc::CallbackServerContext* ctx) const;
  // Counts a call as running, and as ended (with its code and duration): the one place an RPC's
  // status is mapped, with a retry hint on RESOURCE_EXHAUSTED and UNAVAILABLE.
  void begin() { ++in_flight_; }
  grpc::Status end(grpc::CallbackServerContext* ctx, const char* method, Clock::time_point t0, const Status& status);

 private:
  // A unary call: parses Req, admits the caller, runs fn(tenant, req, &resp) on the executor.
  template <typename Req, typename Resp, typename Fn>
  grpc::ServerUnaryReactor* unary(grpc::CallbackServerContext* ctx, const char* method, const grpc::ByteBuffer* req,
                                  grpc::ByteBuffer* resp, Fn fn);

  Engine& engine_;
  const Auth& auth_;
  Metrics& metrics_;
  ServiceLimits limits_;
  std::atomic<bool> draining_{false};
  std::atomic<int> in_flight_{0};
  Executor executor_;
};

// "sessions/{id}" -> id; InvalidArgument otherwise.
StatusOr<std::string> session_id_of(const std::string& name);
void fill_session(const SessionInfo& s, v1::Session* out);
// A Generate request as the engine's turn (all but the tenant); InvalidArgument saying what is
// wrong. The engine checks the rest (Engine::check_turn) when the turn starts.
StatusOr<TurnRequest> turn_request(const v1::GenerateRequest& req);

// The reactors of the streaming methods (stream_reactors.cpp).
grpc::ServerWriteReactor<grpc::ByteBuffer>* make_generate_reactor(InferenceService& svc,
                                                                  grpc::CallbackServerContext* ctx,
                                                                  const grpc::ByteBuffer& req);
grpc::ServerReadReactor<grpc::ByteBuffer>* make_ingest_reactor(InferenceService& svc, grpc::CallbackServerContext* ctx,
                                                               grpc::ByteBuffer* resp);
grpc::ServerWriteReactor<grpc::ByteBuffer>* make_export_reactor(InferenceService& svc, grpc::CallbackServerContext* ctx,
                                                                const grpc::ByteBuffer& req);
grpc::ServerReadReactor<grpc::ByteBuffer>* make_import_reactor(InferenceService& svc, grpc::CallbackServerContext* ctx,
                                                               grpc::ByteBuffer* resp);

}  // namespace edgeinf::server
