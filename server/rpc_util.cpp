#include "server/rpc_util.h"

#include <google/protobuf/message.h>
#include <google/protobuf/stubs/logging.h>
#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"

namespace edgeinf::server {
namespace {

thread_local std::string* g_parse_log = nullptr;  // set while parse_request parses on this thread

void log_handler(google::protobuf::LogLevel level, const char* file, int line, const std::string& message) {
  if (g_parse_log != nullptr) {
    if (!g_parse_log->empty()) g_parse_log->append("; ");
    g_parse_log->append(message);
    return;
  }
  if (level >= google::protobuf::LOGLEVEL_ERROR) {
    spdlog::error("protobuf {}:{}: {}", file, line, message);
  } else {
    spdlog::debug("protobuf {}:{}: {}", file, line, message);
  }
}

}  // namespace

void install_protobuf_log_handler() { google::protobuf::SetLogHandler(log_handler); }

Status parse_request(const grpc::ByteBuffer& buffer, google::protobuf::Message* message) {
  std::vector<grpc::Slice> slices;
  std::string bytes;
  if (!buffer.Dump(&slices).ok()) return absl::InvalidArgumentError("the request could not be read");
  for (const grpc::Slice& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  std::string log;
  g_parse_log = &log;
  const bool ok = message->ParseFromString(bytes);
  g_parse_log = nullptr;
  if (ok) return absl::OkStatus();
  // The library's words ("String field '...' contains invalid UTF-8 data ..."), trimmed of advice
  // that does not apply to a client.
  if (const size_t cut = log.find(" Use the 'bytes' type"); cut != std::string::npos) log.resize(cut);
  return absl::InvalidArgumentError(absl::StrCat("the request is not a valid ", message->GetTypeName(), ": ",
                                                 log.empty() ? "malformed message" : log));
}

grpc::ByteBuffer serialize(const google::protobuf::Message& message) {
  const std::string bytes = message.SerializeAsString();
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

Executor::Executor(int n_threads) {
  for (int i = 0; i < n_threads; ++i) {
    threads_.emplace_back([this] {
      for (;;) {
        std::function<void()> task;
        {
          std::unique_lock<std::mutex> lock(mu_);
          cv_.wait(lock, [&] { return stop_ || !tasks_.empty(); });
          if (tasks_.empty()) return;
          task = std::move(tasks_.front());
          tasks_.pop_front();
        }
        task();
      }
    });
  }
}

Executor::~Executor() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (std::thread& t : threads_) t.join();
}

void Executor::run(std::function<void()> task) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    tasks_.push_back(std::move(task));
  }
  cv_.notify_one();
}

}  // namespace edgeinf::server
