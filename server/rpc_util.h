// What every RPC shares: requests parsed by the service itself (so a message that cannot be read
// is INVALID_ARGUMENT saying why, not gRPC's bare UNIMPLEMENTED), responses serialised back, and a
// small pool of threads for the calls that wait on the session store (never gRPC's own threads).
#pragma once

#include <grpcpp/grpcpp.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "engine/api/status.h"

namespace google::protobuf {
class Message;
}

namespace edgeinf::server {

// Parses a request; InvalidArgument naming the message type and why (e.g. the string field that is
// not UTF-8) when the bytes are not one.
Status parse_request(const grpc::ByteBuffer& buffer, google::protobuf::Message* message);
grpc::ByteBuffer serialize(const google::protobuf::Message& message);
// Routes the protobuf library's log lines through spdlog, and into parse_request's errors while it
// parses. Call once, before serving.
void install_protobuf_log_handler();

// A fixed pool of threads running queued tasks in order of arrival.
class Executor {
 public:
  explicit Executor(int n_threads);
  ~Executor();  // runs what is queued, then joins
  void run(std::function<void()> task);

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace edgeinf::server
