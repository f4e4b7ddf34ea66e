// The one place engine statuses become gRPC statuses (the canonical codes are the same numbers).
#pragma once

#include <grpcpp/grpcpp.h>

#include "engine/api/status.h"

namespace edgeinf::server {

inline grpc::Status to_grpc(const Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(static_cast<int>(s.code())), std::string(s.message()));
}

}  // namespace edgeinf::server
