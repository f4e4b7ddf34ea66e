// edgeinf-client: a command-line client of edgeinfinite.v1.Inference.
//   edgeinf-client [--server ADDR] [--token T] [--deadline-ms N] COMMAND ...
//   generate [--session NAME] [--chat] [--seed N] [--temp T] [-n N] [--stop S] TEXT
//   summarize FILE            upload FILE into a new session (progress bar), stream a summary
//   ingest NAME FILE          upload FILE into session NAME (all or nothing)
//   chat [--session NAME]     interactive; one line per user turn, empty line or EOF ends
//   sessions list | create [POLICY [KV_TYPE]] | get NAME | delete NAME | export NAME FILE | import FILE
//   info | health
// Errors print "edgeinf-client: CODE: message" and exit 1 (2 for bad usage).
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "edgeinfinite/v1/inference.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace v1 = edgeinfinite::v1;

namespace {

const char* code_name(grpc::StatusCode c) {
  static const char* kNames[] = {
      "OK",        "CANCELLED",      "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
      "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
      "ABORTED",   "OUT_OF_RANGE",   "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
      "DATA_LOSS", "UNAUTHENTICATED"};
  const int i = int(c);
  return i >= 0 && i < 17 ? kNames[i] : "UNKNOWN";
}

int fail(const grpc::Status& s) {
  std::fprintf(stderr, "edgeinf-client: %s: %s\n", code_name(s.error_code()), s.error_message().c_str());
  return 1;
}

int usage() {
  std::fputs(
      "usage: edgeinf-client [--server ADDR] [--token T] [--deadline-ms N] COMMAND ...\n"
      "  generate [--session NAME] [--chat] [--seed N] [--temp T] [-n N] [--stop S] TEXT\n"
      "  summarize FILE\n"
      "  ingest NAME FILE\n"
      "  chat [--session NAME]\n"
      "  sessions list | create [POLICY [KV_TYPE]] | get NAME | delete NAME | export NAME FILE | import FILE\n"
      "  info | health\n",
      stderr);
  return 2;
}

struct Client {
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::Inference::Stub> stub;
  std::string token;
  int64_t deadline_ms = 0;

  std::unique_ptr<grpc::ClientContext> context() const {
    auto ctx = std::make_unique<grpc::ClientContext>();
    if (!token.empty()) ctx->AddMetadata("authorization", "Bearer " + token);
    if (deadline_ms > 0) ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(deadline_ms));
    return ctx;
  }
};

void print_session(const v1::Session& s) {
  if (!s.damage().empty()) {
    std::printf("%s DAMAGED: %s\n", s.name().c_str(), s.damage().c_str());
    return;
  }
  std::printf(
      "%s policy=%s S=%d W=%d L=%d kv=%s tokens=%lld exact=%lld compressed=%lld dropped=%lld state=%.1fMiB etag=%s\n",
      s.name().c_str(), s.policy().name().c_str(), s.policy().sink(), s.policy().window(), s.policy().segment(),
      s.policy().kv_type().c_str(), static_cast<long long>(s.total_tokens()), static_cast<long long>(s.exact_tokens()),
      static_cast<long long>(s.compressed_tokens()), static_cast<long long>(s.dropped_tokens()),
      double(s.state_bytes()) / (1 << 20), s.etag().c_str());
}

// Streams one Generate call to stdout; usage goes to stderr.
int run_generate(const Client& c, const v1::GenerateRequest& req, bool show_progress) {
  auto ctx = c.context();
  auto reader = c.stub->Generate(ctx.get(), req);
  v1::GenerateEvent ev;
  while (reader->Read(&ev)) {
    if (ev.has_progress() && show_progress) {
      const auto& p = ev.progress();
      std::fprintf(stderr, "\rprefill %lld/%lld", static_cast<long long>(p.tokens_done()),
                   static_cast<long long>(p.tokens_total()));
      if (p.tokens_done() == p.tokens_total()) std::fputs("\r\033[K", stderr);
    } else if (ev.has_delta()) {
      std::fwrite(ev.delta().text().data(), 1, ev.delta().text().size(), stdout);
      std::fflush(stdout);
    } else if (ev.has_final()) {
      const v1::Final& f = ev.final();
      const v1::Usage& u = f.usage();
      std::fprintf(stderr,
                   "\n[finish %s | prompt %lld cached %lld generated %lld | exact %lld compressed %lld dropped %lld | "
                   "state %.1f MiB | ttft %.3f s | session tokens %lld | etag %s]\n",
                   v1::FinishReason_Name(f.finish_reason()).c_str(), static_cast<long long>(u.prompt_tokens()),
                   static_cast<long long>(u.cached_tokens()), static_cast<long long>(u.generated_tokens()),
                   static_cast<long long>(u.exact_tokens()), static_cast<long long>(u.compressed_tokens()),
                   static_cast<long long>(u.dropped_tokens()), double(u.state_bytes()) / (1 << 20),
                   u.time_to_first_token_s(), static_cast<long long>(f.session_tokens()), f.etag().c_str());
    }
  }
  grpc::Status st = reader->Finish();
  if (!st.ok()) return fail(st);
  std::fputc('\n', stdout);
  return 0;
}

int create_session(const Client& c, const std::string& policy, std::string* name) {
  v1::CreateSessionRequest req;
  req.mutable_policy()->set_name(policy);
  v1::Session s;
  auto ctx = c.context();
  grpc::Status st = c.stub->CreateSession(ctx.get(), req, &s);
  if (!st.ok()) return fail(st);
  *name = s.name();
  return 0;
}

// Uploads a file into a session with Ingest (progress bar on a terminal) and prints the session.
int upload(const Client& c, const std::string& name, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "edgeinf-client: cannot read '%s'\n", path.c_str());
    return 1;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string doc = ss.str();
  auto ctx = c.context();
  v1::IngestResponse resp;
  auto writer = c.stub->Ingest(ctx.get(), &resp);
  constexpr size_t kChunk = 64 << 10;
  const bool tty = isatty(STDERR_FILENO);
  for (size_t off = 0; off < doc.size();) {
    // Pieces end on character boundaries (the server reassembles any cut, but a reader of the
    // traffic sees whole characters).
    size_t end = std::min(doc.size(), off + kChunk);
    while (end < doc.size() && end > off + 1 && (static_cast<unsigned char>(doc[end]) & 0xC0) == 0x80) --end;
    v1::IngestRequest req;
    if (off == 0) req.set_session(name);
    req.set_text(doc.substr(off, end - off));
    off = end;
    if (!writer->Write(req)) break;
    if (tty) {
      const int filled = int(end * 40 / doc.size());
      std::fprintf(stderr, "\rupload [%s%s] %zu/%zu bytes", std::string(size_t(filled), '#').c_str(),
                   std::string(size_t(40 - filled), '.').c_str(), end, doc.size());
    }
  }
  writer->WritesDone();
  grpc::Status st = writer->Finish();
  if (tty) std::fputs("\n", stderr);
  if (!st.ok()) return fail(st);
  std::fprintf(stderr, "ingested %lld tokens: ", static_cast<long long>(resp.ingested_tokens()));
  std::fflush(stderr);
  print_session(resp.session());
  return 0;
}

int summarize(const Client& c, const std::string& path) {
  std::string name;
  if (int rc = create_session(c, "", &name)) return rc;
  std::fprintf(stderr, "session %s\n", name.c_str());
  if (int rc = upload(c, name, path)) return rc;
  v1::GenerateRequest req;
  req.set_session(name);
  auto* m = req.mutable_messages()->add_messages();
  m->set_role("user");
  m->set_content("Summarize the document above in a few sentences.");
  req.mutable_sampling()->set_temperature(0.0f);
  req.mutable_stop()->set_max_tokens(256);
  return run_generate(c, req, isatty(STDERR_FILENO));
}

int chat(const Client& c, std::string name) {
  if (name.empty()) {
    if (int rc = create_session(c, "", &name)) return rc;
  }
  std::fprintf(stderr, "session %s (empty line or EOF ends)\n", name.c_str());
  std::string line;
  for (;;) {
    std::fputs("> ", stderr);
    if (!std::getline(std::cin, line) || line.empty()) break;
    v1::GenerateRequest req;
    req.set_session(name);
    auto* m = req.mutable_messages()->add_messages();
    m->set_role("user");
    m->set_content(line);
    if (int rc = run_generate(c, req, isatty(STDERR_FILENO))) return rc;
  }
  return 0;
}

int sessions(const Client& c, const std::vector<std::string>& a) {
  if (a.empty()) return usage();
  auto ctx = c.context();
  if (a[0] == "list") {
    std::string page;
    do {
      v1::ListSessionsRequest req;
      req.set_page_token(page);
      v1::ListSessionsResponse resp;
      auto pctx = c.context();
      grpc::Status st = c.stub->ListSessions(pctx.get(), req, &resp);
      if (!st.ok()) return fail(st);
      for (const v1::Session& s : resp.sessions()) print_session(s);
      page = resp.next_page_token();
    } while (!page.empty());
    return 0;
  }
  if (a[0] == "create") {
    v1::CreateSessionRequest req;
    if (a.size() > 1) req.mutable_policy()->set_name(a[1]);
    if (a.size() > 2) req.mutable_policy()->set_kv_type(a[2]);
    v1::Session s;
    grpc::Status st = c.stub->CreateSession(ctx.get(), req, &s);
    if (!st.ok()) return fail(st);
    print_session(s);
    return 0;
  }
  if (a[0] == "get" && a.size() == 2) {
    v1::GetSessionRequest req;
    req.set_name(a[1]);
    v1::Session s;
    grpc::Status st = c.stub->GetSession(ctx.get(), req, &s);
    if (!st.ok()) return fail(st);
    print_session(s);
    return 0;
  }
  if (a[0] == "delete" && a.size() == 2) {
    v1::DeleteSessionRequest req;
    req.set_name(a[1]);
    v1::DeleteSessionResponse resp;
    grpc::Status st = c.stub->DeleteSession(ctx.get(), req, &resp);
    if (!st.ok()) return fail(st);
    std::printf("deleted %s\n", a[1].c_str());
    return 0;
  }
  if (a[0] == "export" && a.size() == 3) {
    v1::ExportSessionRequest req;
    req.set_name(a[1]);
    auto reader = c.stub->ExportSession(ctx.get(), req);
    std::ofstream out(a[2], std::ios::binary);
    v1::SnapshotChunk chunk;
    size_t n = 0;
    while (reader->Read(&chunk))
      out.write(chunk.data().data(), std::streamsize(chunk.data().size())), n += chunk.data().size();
    grpc::Status st = reader->Finish();
    if (!st.ok()) return fail(st);
    std::printf("exported %s to %s (%zu bytes)\n", a[1].c_str(), a[2].c_str(), n);
    return 0;
  }
  if (a[0] == "import" && a.size() == 2) {
    std::ifstream in(a[1], std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "edgeinf-client: cannot read '%s'\n", a[1].c_str());
      return 1;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string bytes = ss.str();
    v1::Session s;
    auto writer = c.stub->ImportSession(ctx.get(), &s);
    for (size_t off = 0; off < bytes.size(); off += 1 << 20) {
      v1::SnapshotChunk chunk;
      chunk.set_data(bytes.substr(off, 1 << 20));
      if (!writer->Write(chunk)) break;
    }
    writer->WritesDone();
    grpc::Status st = writer->Finish();
    if (!st.ok()) return fail(st);
    print_session(s);
    return 0;
  }
  return usage();
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);  // a vanished server is an error on the call, not the end of the process
  Client c;
  std::string server = "127.0.0.1:50051";
  if (const char* env = std::getenv("EDGEINF_SERVER")) server = env;
  if (const char* env = std::getenv("EDGEINF_TOKEN")) c.token = env;
  int i = 1;
  for (; i < argc && argv[i][0] == '-'; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) return usage();
    if (a == "--server") {
      server = argv[++i];
    } else if (a == "--token") {
      c.token = argv[++i];
    } else if (a == "--deadline-ms") {
      if (!absl::SimpleAtoi(argv[++i], &c.deadline_ms)) return usage();
    } else {
      return usage();
    }
  }
  if (i >= argc) return usage();
  const std::string cmd = argv[i++];
  std::vector<std::string> rest(argv + i, argv + argc);
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  c.channel = grpc::CreateCustomChannel(server, grpc::InsecureChannelCredentials(), args);
  c.stub = v1::Inference::NewStub(c.channel);

  if (cmd == "health") {
    auto stub = grpc::health::v1::Health::NewStub(c.channel);
    grpc::health::v1::HealthCheckRequest req;
    req.set_service(rest.empty() ? "" : rest[0]);
    grpc::health::v1::HealthCheckResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    grpc::Status st = stub->Check(&ctx, req, &resp);
    if (!st.ok()) return fail(st);
    std::printf("%s\n", grpc::health::v1::HealthCheckResponse_ServingStatus_Name(resp.status()).c_str());
    return resp.status() == grpc::health::v1::HealthCheckResponse::SERVING ? 0 : 1;
  }
  if (cmd == "info") {
    v1::ServerInfo info;
    auto ctx = c.context();
    grpc::Status st = c.stub->GetServerInfo(ctx.get(), v1::GetServerInfoRequest(), &info);
    if (!st.ok()) return fail(st);
    std::printf("%s", info.DebugString().c_str());
    return 0;
  }
  if (cmd == "sessions") return sessions(c, rest);
  if (cmd == "summarize") return rest.size() == 1 ? summarize(c, rest[0]) : usage();
  if (cmd == "ingest") return rest.size() == 2 ? upload(c, rest[0], rest[1]) : usage();
  if (cmd == "chat") {
    if (rest.size() == 2 && rest[0] == "--session") return chat(c, rest[1]);
    return rest.empty() ? chat(c, "") : usage();
  }
  if (cmd == "generate") {
    v1::GenerateRequest req;
    bool chat_mode = false;
    std::string text;
    for (size_t k = 0; k < rest.size(); ++k) {
      const std::string& a = rest[k];
      const bool has_value = k + 1 < rest.size();
      if (a == "--session" && has_value) {
        req.set_session(rest[++k]);
      } else if (a == "--chat") {
        chat_mode = true;
      } else if (a == "--seed" && has_value) {
        uint64_t seed = 0;
        if (!absl::SimpleAtoi(rest[++k], &seed)) return usage();
        req.mutable_sampling()->set_seed(seed);
      } else if (a == "--temp" && has_value) {
        float t = 0;
        if (!absl::SimpleAtof(rest[++k], &t)) return usage();
        req.mutable_sampling()->set_temperature(t);
      } else if (a == "-n" && has_value) {
        int n = 0;
        if (!absl::SimpleAtoi(rest[++k], &n)) return usage();
        req.mutable_stop()->set_max_tokens(n);
      } else if (a == "--stop" && has_value) {
        req.mutable_stop()->add_stop(rest[++k]);
      } else if (text.empty()) {
        text = a;
      } else {
        return usage();
      }
    }
    if (chat_mode) {
      auto* m = req.mutable_messages()->add_messages();
      m->set_role("user");
      m->set_content(text);
    } else {
      req.set_text(text);
    }
    return run_generate(c, req, isatty(STDERR_FILENO));
  }
  return usage();
}
