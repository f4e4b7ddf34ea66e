// The edgeinfinite.v1.Inference service on gRPC's callback API: proto in, engine API, proto out.
#pragma once

#include <memory>

#include "edgeinfinite/v1/inference.grpc.pb.h"
#include "engine/api/engine.h"
#include "server/auth.h"
#include "server/metrics.h"

namespace edgeinf::server {

struct ServiceLimits {
  int64_t max_message_bytes = 4 << 20;
};

class InferenceService final : public edgeinfinite::v1::Inference::CallbackService {
 public:
  InferenceService(Engine& engine, const Auth& auth, Metrics& metrics, ServiceLimits limits);

  grpc::ServerWriteReactor<edgeinfinite::v1::GenerateEvent>* Generate(
      grpc::CallbackServerContext* ctx, const edgeinfinite::v1::GenerateRequest* req) override;
  grpc::ServerReadReactor<edgeinfinite::v1::IngestRequest>* Ingest(grpc::CallbackServerContext* ctx,
                                                                   edgeinfinite::v1::IngestResponse* resp) override;
  grpc::ServerUnaryReactor* CreateSession(grpc::CallbackServerContext* ctx,
                                          const edgeinfinite::v1::CreateSessionRequest* req,
                                          edgeinfinite::v1::Session* resp) override;
  grpc::ServerUnaryReactor* GetSession(grpc::CallbackServerContext* ctx, const edgeinfinite::v1::GetSessionRequest* req,
                                       edgeinfinite::v1::Session* resp) override;
  grpc::ServerUnaryReactor* ListSessions(grpc::CallbackServerContext* ctx,
                                         const edgeinfinite::v1::ListSessionsRequest* req,
                                         edgeinfinite::v1::ListSessionsResponse* resp) override;
  grpc::ServerUnaryReactor* DeleteSession(grpc::CallbackServerContext* ctx,
                                          const edgeinfinite::v1::DeleteSessionRequest* req,
                                          edgeinfinite::v1::DeleteSessionResponse* resp) override;
  grpc::ServerWriteReactor<edgeinfinite::v1::SnapshotChunk>* ExportSession(
      grpc::CallbackServerContext* ctx, const edgeinfinite::v1::ExportSessionRequest* req) override;
  grpc::ServerReadReactor<edgeinfinite::v1::SnapshotChunk>* ImportSession(grpc::CallbackServerContext* ctx,
                                                                          edgeinfinite::v1::Session* resp) override;
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* ctx, const edgeinfinite::v1::TokenizeRequest* req,
                                     edgeinfinite::v1::TokenizeResponse* resp) override;
  grpc::ServerUnaryReactor* GetServerInfo(grpc::CallbackServerContext* ctx,
                                          const edgeinfinite::v1::GetServerInfoRequest* req,
                                          edgeinfinite::v1::ServerInfo* resp) override;

  Engine& engine() { return engine_; }
  Metrics& metrics() { return metrics_; }
  const ServiceLimits& limits() const { return limits_; }
  // The caller's tenant from its metadata.
  StatusOr<std::string> tenant(grpc::CallbackServerContext* ctx) const;

 private:
  Engine& engine_;
  const Auth& auth_;
  Metrics& metrics_;
  ServiceLimits limits_;
};

// "sessions/{id}" -> id; InvalidArgument otherwise.
StatusOr<std::string> session_id_of(const std::string& name);

}  // namespace edgeinf::server
