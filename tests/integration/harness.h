// What the service tests share: real edgeinf-server and redis-server processes on 127.0.0.1 (with
// their logs, signals and exit statuses), a real gRPC client, requests and their streamed answers,
// raw calls with bytes no generated stub would send, and metrics scraped from the server's port.
#pragma once

#include <arpa/inet.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <regex>
#include <sstream>
#include <thread>

#include "edgeinfinite/v1/inference.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "server/reactor_sync.h"
#include "tests/test_paths.h"

namespace edgeinf::testing {

namespace v1 = edgeinfinite::v1;
namespace fs = std::filesystem;

inline int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

inline std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline std::string temp_path(const std::string& what) {
  static int n = 0;
  return ::testing::TempDir() + "/edgeinf-" + what + "-" + std::to_string(::getpid()) + "-" + std::to_string(n++);
}

// A child process with its output in a log file; SIGTERM and reaped on destruction, when a
// sanitizer's report in its log fails the test that started it (also where the test did not see
// it die: a kill -9 test cannot tell an abort from its own kill).
class Process {
 public:
  Process(std::vector<std::string> argv, const std::string& log) : log_(log) {
    // Empty the log before the child starts: a log left by an earlier process with the same pid
    // must not be read as this one's.
    std::fclose(std::fopen(log.c_str(), "w"));
    pid_ = ::fork();
    if (pid_ == 0) {
      FILE* f = std::fopen(log.c_str(), "w");
      ::dup2(fileno(f), 1);
      ::dup2(fileno(f), 2);
      std::vector<char*> args;
      for (std::string& a : argv) args.push_back(a.data());
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      std::_Exit(127);
    }
  }
  ~Process() {
    stop();
    const std::string out = log();
    for (const char* mark :
         {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "WARNING: ThreadSanitizer", ": runtime error: "}) {
      if (out.find(mark) != std::string::npos) ADD_FAILURE() << log_ << " holds a sanitizer's report:\n" << out;
    }
  }
  // SIGTERM (or another signal) and wait for the exit.
  void stop(int sig = SIGTERM) {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGCONT);  // a paused process must be able to exit
    ::kill(pid_, sig);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    exit_status_ = status;
    pid_ = -1;
  }
  void signal(int sig) const {
    if (pid_ > 0) ::kill(pid_, sig);
  }
  bool running() {
    if (pid_ <= 0) return false;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      exit_status_ = status;
      pid_ = -1;
      return false;
    }
    return true;
  }
  bool wait_for_log(const std::string& needle, double seconds) const {
    const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (std::chrono::steady_clock::now() < end) {
      if (read_all(log_).find(needle) != std::string::npos) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }
  // Waits for the process to exit by itself.
  bool wait_exit(double seconds) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (std::chrono::steady_clock::now() < end) {
      if (!running()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }
  std::string log() const { return read_all(log_); }
  int exit_status() const { return exit_status_; }
  pid_t pid() const { return pid_; }

 private:
  std::string log_;
  pid_t pid_ = -1;
  int exit_status_ = -1;
};

inline std::string describe_exit(int status) {
  if (WIFEXITED(status)) return "exit " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "signal " + std::to_string(WTERMSIG(status));
  return "status " + std::to_string(status);
}

// A real redis-server on a free port (no persistence unless asked), restartable on that port.
class Redis {
 public:
  explicit Redis(bool append_only = false) : port_(free_port()), dir_(temp_path("redis")), aof_(append_only) {
    fs::create_directories(dir_);
    start();
  }
  void start() {
    proc_ = std::make_unique<Process>(
        std::vector<std::string>{"/usr/bin/redis-server", "--bind", "127.0.0.1", "--port", std::to_string(port_),
                                 "--save", "", "--appendonly", aof_ ? "yes" : "no", "--appendfsync", "always", "--dir",
                                 dir_},
        dir_ + "/redis-" + std::to_string(starts_++) + ".log");
    EXPECT_TRUE(proc_->wait_for_log("Ready to accept connections", 20)) << proc_->log();
  }
  void stop(int sig) { proc_->stop(sig); }
  void pause() const { proc_->signal(SIGSTOP); }
  void resume() const { proc_->signal(SIGCONT); }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_); }
  int port() const { return port_; }
  // Runs redis-cli against it.
  std::string cli(const std::string& args) const {
    const std::string out = temp_path("redis-cli");
    const std::string cmd = "/usr/bin/redis-cli -p " + std::to_string(port_) + " " + args + " > " + out + " 2>&1";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    return read_all(out);
  }

 private:
  int port_;
  std::string dir_;
  bool aof_;
  int starts_ = 0;
  std::unique_ptr<Process> proc_;
};

// The memory gate installed beside the test model.
inline std::string gate_path() {
  const std::string m = test_model_path();
  return m.substr(0, m.size() - 5) + ".gate.gguf";
}

struct Server {
  int port = 0;
  std::unique_ptr<Process> proc;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::Inference::Stub> stub;

  // Small S/W/L so that short prompts fold into memory.
  static std::vector<std::string> argv(int port, const std::string& store, const std::vector<std::string>& extra) {
    std::vector<std::string> a = {EDGEINF_SERVER_BIN, "--listen=127.0.0.1:" + std::to_string(port),
                                  "--metrics_listen=127.0.0.1:0", "--model=" + test_model_path(),
                                  // The shipped gate (beside the model): the memory is read,
                                  // so a damaged M or z would show in the text.
                                  "--gate=" + gate_path(), "--store=" + store, "--threads=2", "--sink=4", "--window=60",
                                  "--segment=32", "--max_tokens_limit=512"};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }

  static std::unique_ptr<Server> start(const std::string& store, std::vector<std::string> extra = {},
                                       bool expect_serving = true) {
    auto s = std::make_unique<Server>();
    s->port = free_port();
    s->proc = std::make_unique<Process>(argv(s->port, store, extra), temp_path("server") + ".log");
    if (expect_serving) {
      EXPECT_TRUE(s->proc->wait_for_log("serving on", 60)) << s->proc->log();
    }
    s->channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(s->port), grpc::InsecureChannelCredentials());
    s->stub = v1::Inference::NewStub(s->channel);
    return s;
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port); }
};

struct Turn {
  grpc::Status status;
  std::string text;
  std::vector<int32_t> ids;
  int progress_events = 0;
  int64_t progress_total = 0;
  bool has_final = false;
  v1::Final final;
  bool retry_hint = false;
  // When the call began, its first delta arrived and it ended (steady clock).
  std::chrono::steady_clock::time_point started, first_delta, ended;
};

// `first_delta_seen`, when given, is set once the first delta has arrived (for tests that act mid-turn).
inline Turn generate(v1::Inference::Stub& stub, const v1::GenerateRequest& req, const std::string& token = "",
                     int cancel_after_deltas = -1, int deadline_ms = 0, std::atomic<bool>* first_delta_seen = nullptr) {
  grpc::ClientContext ctx;
  if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
  if (deadline_ms > 0) ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(deadline_ms));
  Turn t;
  t.started = std::chrono::steady_clock::now();
  auto reader = stub.Generate(&ctx, req);
  v1::GenerateEvent ev;
  int deltas = 0;
  while (reader->Read(&ev)) {
    if (ev.has_progress()) {
      ++t.progress_events;
      t.progress_total = ev.progress().tokens_total();
    }
    if (ev.has_delta()) {
      if (deltas == 0) {
        t.first_delta = std::chrono::steady_clock::now();
        if (first_delta_seen != nullptr) *first_delta_seen = true;
      }
      t.text += ev.delta().text();
      t.ids.insert(t.ids.end(), ev.delta().token_ids().begin(), ev.delta().token_ids().end());
      if (++deltas == cancel_after_deltas) ctx.TryCancel();
    }
    if (ev.has_final()) {
      t.has_final = true;
      t.final = ev.final();
    }
  }
  t.status = reader->Finish();
  t.ended = std::chrono::steady_clock::now();
  t.retry_hint = ctx.GetServerTrailingMetadata().count("retry-after-ms") > 0;
  return t;
}

inline v1::GenerateRequest text_request(const std::string& session, const std::string& text, int max_tokens,
                                        uint64_t seed) {
  v1::GenerateRequest r;
  r.set_session(session);
  r.set_text(text);
  r.mutable_stop()->set_max_tokens(max_tokens);
  r.mutable_sampling()->set_seed(seed);
  r.mutable_sampling()->set_temperature(0.8f);
  return r;
}

inline std::string scrape(const Server& s) {
  std::smatch m;
  const std::string log = s.proc->log();
  EXPECT_TRUE(std::regex_search(log, m, std::regex("metrics on port ([0-9]+)"))) << log;
  const std::string out = temp_path("scrape") + ".txt";
  const std::string cmd = "curl -s -o " + out + " http://127.0.0.1:" + m[1].str() + "/metrics";
  EXPECT_EQ(std::system(cmd.c_str()), 0);
  return read_all(out);
}

// A metric's value (the first sample whose name and labels start with `series`), or -1.
inline double metric(const std::string& scraped, const std::string& series) {
  std::istringstream in(scraped);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(series, 0) == 0 && line.size() > series.size() &&
        (line[series.size()] == ' ' || line[series.size()] == '{')) {
      return std::stod(line.substr(line.rfind(' ') + 1));
    }
  }
  return -1;
}

inline std::string create_session(v1::Inference::Stub& stub, const std::string& token = "", grpc::Status* out = nullptr,
                                  const v1::PolicyConfig& policy = {}) {
  grpc::ClientContext ctx;
  if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
  v1::CreateSessionRequest req;
  *req.mutable_policy() = policy;
  v1::Session s;
  grpc::Status st = stub.CreateSession(&ctx, req, &s);
  if (out != nullptr) *out = st;
  EXPECT_TRUE(out != nullptr || st.ok()) << st.error_message();
  return s.name();
}

inline grpc::Status get_session(v1::Inference::Stub& stub, const std::string& name, v1::Session* s,
                                const std::string& token = "") {
  grpc::ClientContext ctx;
  if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
  v1::GetSessionRequest req;
  req.set_name(name);
  return stub.GetSession(&ctx, req, s);
}

inline grpc::Status delete_session(v1::Inference::Stub& stub, const std::string& name) {
  grpc::ClientContext ctx;
  v1::DeleteSessionRequest req;
  req.set_name(name);
  v1::DeleteSessionResponse resp;
  return stub.DeleteSession(&ctx, req, &resp);
}

inline std::string temp_store() {
  const std::string dir = temp_path("store");
  fs::remove_all(dir);
  return "dir://" + dir;
}

// Ingest of a document cut into the given pieces; the response when OK.
inline grpc::Status ingest(v1::Inference::Stub& stub, const std::string& session,
                           const std::vector<std::string>& pieces, v1::IngestResponse* resp) {
  grpc::ClientContext ctx;
  auto w = stub.Ingest(&ctx, resp);
  for (size_t i = 0; i < pieces.size(); ++i) {
    v1::IngestRequest req;
    if (i == 0) req.set_session(session);
    req.set_text(pieces[i]);
    if (!w->Write(req)) break;
  }
  w->WritesDone();
  return w->Finish();
}

// A session's snapshot, read with ExportSession.
inline grpc::Status export_session(v1::Inference::Stub& stub, const std::string& name, std::string* snapshot) {
  grpc::ClientContext ctx;
  v1::ExportSessionRequest req;
  req.set_name(name);
  auto r = stub.ExportSession(&ctx, req);
  v1::SnapshotChunk c;
  snapshot->clear();
  while (r->Read(&c)) *snapshot += c.data();
  return r->Finish();
}

// A snapshot imported as a new session, in 32 KiB chunks (under any message limit a test sets).
inline grpc::Status import_session(v1::Inference::Stub& stub, const std::string& snapshot, v1::Session* out) {
  grpc::ClientContext ctx;
  auto w = stub.ImportSession(&ctx, out);
  for (size_t off = 0; off < snapshot.size(); off += 32768) {
    v1::SnapshotChunk c;
    c.set_data(snapshot.substr(off, 32768));
    if (!w->Write(c)) break;
  }
  w->WritesDone();
  return w->Finish();
}

// A call with raw request bytes, messages the generated stubs would never send: each element of
// `messages` goes out as one message, then the stream half-closes; the answers come back raw.
struct RawResult {
  grpc::Status status;
  std::vector<std::string> responses;
};

inline RawResult raw_call(const std::shared_ptr<grpc::Channel>& channel, const std::string& method,
                          const std::vector<std::string>& messages) {
  class Reactor final : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
   public:
    explicit Reactor(const std::vector<std::string>& messages) {
      for (const std::string& m : messages) {
        grpc::Slice s(m);
        out_.emplace_back(&s, 1);
      }
    }
    void start() {
      StartRead(&in_);
      next();
      server::handed_over(this);
      StartCall();
    }
    void OnWriteDone(bool ok) override {
      server::InCallback in(this);
      if (ok) next();
    }
    void OnReadDone(bool ok) override {
      server::InCallback in(this);
      if (!ok) return;
      std::vector<grpc::Slice> slices;
      (void)in_.Dump(&slices);
      std::string bytes;
      for (const grpc::Slice& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
      result.responses.push_back(bytes);
      server::handed_over(this);
      StartRead(&in_);
    }
    void OnDone(const grpc::Status& s) override {
      server::taken_back(this);
      std::lock_guard<std::mutex> lock(mu_);
      result.status = s;
      done_ = true;
      cv_.notify_all();
    }
    void wait() {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return done_; });
    }
    RawResult result;

   private:
    void next() {
      if (sent_ < out_.size()) {
        const grpc::ByteBuffer* message = &out_[sent_++];
        server::handed_over(this);
        StartWrite(message);
      } else if (!closed_) {
        closed_ = true;
        server::handed_over(this);
        StartWritesDone();
      }
    }
    std::vector<grpc::ByteBuffer> out_;
    size_t sent_ = 0;
    bool closed_ = false;
    grpc::ByteBuffer in_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool done_ = false;
  };
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  Reactor reactor(messages);
  stub.PrepareBidiStreamingCall(&ctx, method, grpc::StubOptions(), &reactor);
  reactor.start();
  reactor.wait();
  return reactor.result;
}

inline std::string health_status(const std::shared_ptr<grpc::Channel>& channel, const std::string& service,
                                 grpc::Status* call = nullptr) {
  auto health = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::health::v1::HealthCheckRequest req;
  req.set_service(service);
  grpc::health::v1::HealthCheckResponse resp;
  const grpc::Status st = health->Check(&ctx, req, &resp);
  if (call != nullptr) *call = st;
  if (!st.ok()) return "error: " + st.error_message();
  return grpc::health::v1::HealthCheckResponse_ServingStatus_Name(resp.status());
}

inline const char* kStory =
    "The lighthouse keeper counted the ships every evening. On Monday there were three, on Tuesday five, and on "
    "Wednesday a storm kept every boat in the harbour. The keeper wrote each number in a green book, and when the "
    "book was full he started a red one. His daughter painted the door blue and planted tomatoes by the wall. ";

}  // namespace edgeinf::testing
