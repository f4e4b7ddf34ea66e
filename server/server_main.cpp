// edgeinf-server: loads the model, opens the session store, and serves edgeinfinite.v1.Inference
// with grpc.health.v1 and server reflection on one port and Prometheus metrics on another.
// Every flag can also come from the environment as EDGEINF_<FLAG> (the command line wins).
//
// Health: service "" answers SERVING while the process serves (liveness); service
// "edgeinfinite.v1.Inference" answers SERVING only while the session store answers too
// (readiness). On SIGTERM both turn NOT_SERVING, new calls get UNAVAILABLE, the calls in flight get
// --shutdown_grace_s to finish, then the server stops. After a device failure that leaves the GPU
// unusable (a sticky CUDA error) both turn NOT_SERVING for good and turns are refused: the
// orchestrator's liveness probe replaces the process.
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <malloc.h>
#include <netdb.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <prometheus/exposer.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/redis_store.h"
#include "server/service.h"
#include "server/store_monitor.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:50051", "gRPC address (host:port)");
ABSL_FLAG(std::string, metrics_listen, "127.0.0.1:9464", "Prometheus /metrics address; empty = off");
ABSL_FLAG(std::string, model, "models/SmolLM2-135M-Instruct.Q4_1.gguf", "GGUF model");
ABSL_FLAG(std::string, gate, "", "memory gate file (default MODEL.gate.gguf if present; 'none' = no gate)");
ABSL_FLAG(std::string, store, "dir://sessions",
          "session store: dir://PATH (a relative PATH is under the working directory) or redis://HOST:PORT[/DB]");
ABSL_FLAG(int, store_timeout_ms, 3000, "deadline of every session store call; past it the call is UNAVAILABLE");
ABSL_FLAG(int, threads, 0, "compute threads (0 = every core)");
ABSL_FLAG(std::string, device, "auto", "cpu, cuda, or auto (cuda when a CUDA device can be used, else cpu)");
ABSL_FLAG(std::string, policy, "edgeinfinite", "default KV policy of sessions and one-off requests");
ABSL_FLAG(int, sink, -1, "sink tokens (default: the gate's, else 4)");
ABSL_FLAG(int, window, -1, "window tokens (default: the gate's, else 1024)");
ABSL_FLAG(int, segment, -1, "segment tokens (default: the gate's, else 512)");
ABSL_FLAG(std::string, kv_type, "",
          "how sessions store exact KV entries by default: f32, f16 or q8 (int8, a scale per 32 values) "
          "(default: the gate's, else f32)");
ABSL_FLAG(std::string, auth_tokens, "",
          "file of lines 'SHA256(token) tenant' (hex SHA-256 of each bearer token); callers send "
          "'authorization: Bearer TOKEN'; empty = no authentication");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate chain; with --tls_key serves TLS");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert");
ABSL_FLAG(int64_t, max_message_bytes, 4 << 20, "largest request message");
ABSL_FLAG(int64_t, max_prompt_tokens, 1 << 20, "largest prompt of one Generate request, in tokens");
ABSL_FLAG(int, max_tokens_limit, 4096, "largest max_tokens a request may ask for");
ABSL_FLAG(int, max_sessions_per_tenant, 1000, "sessions one tenant may hold");
ABSL_FLAG(int64_t, memory_budget_mb, 4096,
          "the process's memory, MiB: model, scratch and every context in memory (admission counts a busy "
          "context at its bound); idle contexts are dropped when resident memory exceeds it");
ABSL_FLAG(int64_t, hot_mb, 1024, "idle session state kept in memory (LRU), MiB");
ABSL_FLAG(int, admission_wait_ms, 10000,
          "how long a turn waits in line for room in the memory budget before RESOURCE_EXHAUSTED");
ABSL_FLAG(int, io_threads, 4, "threads loading sessions from and committing turns to the store");
ABSL_FLAG(int, rpc_threads, 4, "threads serving the session calls (get, list, delete, export, import)");
ABSL_FLAG(int, max_deltas, 64, "delta records a session accumulates before a commit writes a full snapshot");
ABSL_FLAG(int64_t, io_memory_mb, 256,
          "memory for session records in flight (loads, commits, exports, imports), MiB; part of the budget");
ABSL_FLAG(int, shutdown_grace_s, 30, "seconds in-flight requests get to finish on SIGTERM");

namespace {

std::atomic<bool> g_stop{false};
void on_signal(int) { g_stop = true; }

constexpr const char* kFlagNames[] = {"listen",
                                      "metrics_listen",
                                      "model",
                                      "gate",
                                      "store",
                                      "store_timeout_ms",
                                      "threads",
                                      "device",
                                      "policy",
                                      "sink",
                                      "window",
                                      "segment",
                                      "kv_type",
                                      "auth_tokens",
                                      "tls_cert",
                                      "tls_key",
                                      "max_message_bytes",
                                      "max_prompt_tokens",
                                      "max_tokens_limit",
                                      "max_sessions_per_tenant",
                                      "memory_budget_mb",
                                      "hot_mb",
                                      "admission_wait_ms",
                                      "io_threads",
                                      "rpc_threads",
                                      "max_deltas",
                                      "io_memory_mb",
                                      "shutdown_grace_s"};

// EDGEINF_<NAME> environment variables become flags unless the command line sets them.
std::vector<std::string> args_with_environment(int argc, char** argv) {
  std::vector<std::string> args = {argv[0]};
  for (const char* name : kFlagNames) {
    const std::string env = "EDGEINF_" + absl::AsciiStrToUpper(name);
    if (const char* v = std::getenv(env.c_str())) args.push_back(absl::StrCat("--", name, "=", v));
  }
  for (int i = 1; i < argc; ++i) args.emplace_back(argv[i]);  // later flags override earlier ones
  return args;
}

edgeinf::StatusOr<std::string> read_file(const std::string& flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return absl::InvalidArgumentError(absl::StrCat("cannot read --", flag, " '", path, "': ", std::strerror(errno)));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The certificate and key, checked: both given, PEM, and the key the certificate's.
edgeinf::Status load_tls(grpc::SslServerCredentialsOptions* ssl) {
  const std::string cert_path = absl::GetFlag(FLAGS_tls_cert), key_path = absl::GetFlag(FLAGS_tls_key);
  if (cert_path.empty() || key_path.empty()) {
    return absl::InvalidArgumentError("--tls_cert and --tls_key go together: give both or neither");
  }
  EDGEINF_ASSIGN_OR_RETURN(std::string cert, read_file("tls_cert", cert_path));
  EDGEINF_ASSIGN_OR_RETURN(std::string key, read_file("tls_key", key_path));
  auto parse_cert = [](const std::string& pem) {
    BIO* b = BIO_new_mem_buf(pem.data(), int(pem.size()));
    X509* x = PEM_read_bio_X509(b, nullptr, nullptr, nullptr);
    BIO_free(b);
    return x;
  };
  auto parse_key = [](const std::string& pem) {
    BIO* b = BIO_new_mem_buf(pem.data(), int(pem.size()));
    EVP_PKEY* k = PEM_read_bio_PrivateKey(b, nullptr, nullptr, nullptr);
    BIO_free(b);
    return k;
  };
  X509* x = parse_cert(cert);
  EVP_PKEY* k = parse_key(key);
  edgeinf::Status st;
  if (x == nullptr || k == nullptr) {
    X509* key_as_cert = parse_cert(key);
    EVP_PKEY* cert_as_key = parse_key(cert);
    const bool swapped = key_as_cert != nullptr || cert_as_key != nullptr;
    X509_free(key_as_cert);
    EVP_PKEY_free(cert_as_key);
    st = absl::InvalidArgumentError(
        absl::StrCat(x == nullptr ? absl::StrCat("--tls_cert '", cert_path, "' holds no PEM certificate")
                                  : absl::StrCat("--tls_key '", key_path, "' holds no PEM private key"),
                     swapped ? " (are --tls_cert and --tls_key swapped?)" : ""));
  } else if (X509_check_private_key(x, k) != 1) {
    st = absl::InvalidArgumentError(absl::StrCat("the key in --tls_key '", key_path,
                                                 "' does not match the certificate in --tls_cert '", cert_path, "'"));
  }
  X509_free(x);
  EVP_PKEY_free(k);
  if (st.ok()) ssl->pem_key_cert_pairs.push_back({key, cert});
  return st;
}

// Whether the address can be bound, so that a busy port fails the start before anything is opened.
edgeinf::Status check_listen(const std::string& address) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) return absl::InvalidArgumentError(absl::StrCat("--listen '", address, "': no port"));
  std::string host = address.substr(0, colon);
  const std::string port = address.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  if (const int e = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &res); e != 0) {
    return absl::InvalidArgumentError(absl::StrCat("cannot listen on ", address, ": ", ::gai_strerror(e)));
  }
  edgeinf::Status st;
  const int fd = ::socket(res->ai_family, res->ai_socktype, res->ai_protocol);
  const int one = 1;
  if (fd >= 0) ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (fd < 0 || ::bind(fd, res->ai_addr, res->ai_addrlen) != 0) {
    st = absl::UnavailableError(absl::StrCat("cannot listen on ", address, ": ", std::strerror(errno)));
  }
  if (fd >= 0) ::close(fd);
  ::freeaddrinfo(res);
  return st;
}

int run(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Serves edgeinfinite.v1.Inference (streamed generation over sessions).\n"
      "usage: edgeinf-server [--flag=value ...]   (every flag also as EDGEINF_<FLAG>)");
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [](absl::string_view file) { return absl::StrContains(file, "server_main"); };
  usage.contains_helpshort_flags = usage.contains_help_flags;
  absl::SetFlagsUsageConfig(usage);
  std::vector<std::string> args = args_with_environment(argc, argv);
  std::vector<char*> cargs;
  for (std::string& a : args) cargs.push_back(a.data());
  const std::vector<char*> rest = absl::ParseCommandLine(int(cargs.size()), cargs.data());
  if (rest.size() > 1) {
    spdlog::error("unexpected argument '{}' (flags are --name=value; see --help)", rest[1]);
    return 2;
  }

  // Everything that can be checked without side effects first: a failed start creates nothing.
  auto store_url = edgeinf::server::parse_store_url(absl::GetFlag(FLAGS_store));
  if (!store_url.ok()) {
    spdlog::error("{}", store_url.status().ToString());
    return 1;
  }
  auto auth = edgeinf::server::Auth::load(absl::GetFlag(FLAGS_auth_tokens));
  if (!auth.ok()) {
    spdlog::error("{}", auth.status().ToString());
    return 1;
  }
  std::shared_ptr<grpc::ServerCredentials> creds = grpc::InsecureServerCredentials();
  if (!absl::GetFlag(FLAGS_tls_cert).empty() || !absl::GetFlag(FLAGS_tls_key).empty()) {
    grpc::SslServerCredentialsOptions ssl;
    if (const edgeinf::Status st = load_tls(&ssl); !st.ok()) {
      spdlog::error("{}", st.ToString());
      return 1;
    }
    creds = grpc::SslServerCredentials(ssl);
  }
  if (const edgeinf::Status st = check_listen(absl::GetFlag(FLAGS_listen)); !st.ok()) {
    spdlog::error("{}", st.ToString());
    return 1;
  }
  if (absl::GetFlag(FLAGS_store_timeout_ms) <= 0) {
    spdlog::error("--store_timeout_ms must be positive");
    return 1;
  }

  edgeinf::server::Metrics metrics;
  std::unique_ptr<prometheus::Exposer> exposer;
  if (!absl::GetFlag(FLAGS_metrics_listen).empty()) {
    try {
      exposer = std::make_unique<prometheus::Exposer>(absl::GetFlag(FLAGS_metrics_listen));
    } catch (const std::exception& e) {
      spdlog::error("cannot serve metrics on {}: {}", absl::GetFlag(FLAGS_metrics_listen), e.what());
      return 1;
    }
    exposer->RegisterCollectable(metrics.registry());
    for (int port : exposer->GetListeningPorts()) spdlog::info("metrics on port {}", port);
  }

  edgeinf::EngineConfig ec;
  ec.model_path = absl::GetFlag(FLAGS_model);
  ec.gate_path = absl::GetFlag(FLAGS_gate);
  ec.threads = absl::GetFlag(FLAGS_threads);
  ec.device = absl::GetFlag(FLAGS_device);
  ec.default_policy = absl::GetFlag(FLAGS_policy);
  ec.shape.sink = absl::GetFlag(FLAGS_sink);
  ec.shape.window = absl::GetFlag(FLAGS_window);
  ec.shape.segment = absl::GetFlag(FLAGS_segment);
  ec.shape.kv_type = absl::GetFlag(FLAGS_kv_type);
  ec.max_prompt_tokens = absl::GetFlag(FLAGS_max_prompt_tokens);
  ec.max_tokens_limit = absl::GetFlag(FLAGS_max_tokens_limit);
  ec.max_sessions_per_tenant = absl::GetFlag(FLAGS_max_sessions_per_tenant);
  ec.memory_budget_bytes = size_t(absl::GetFlag(FLAGS_memory_budget_mb)) << 20;
  ec.hot_bytes = size_t(absl::GetFlag(FLAGS_hot_mb)) << 20;
  ec.admission_wait_ms = std::max(0, absl::GetFlag(FLAGS_admission_wait_ms));
  ec.io_threads = absl::GetFlag(FLAGS_io_threads);
  ec.max_deltas = absl::GetFlag(FLAGS_max_deltas);
  ec.io_bytes = size_t(std::max<int64_t>(1, absl::GetFlag(FLAGS_io_memory_mb))) << 20;
  std::atomic<bool> store_up{true};
  edgeinf::server::MonitoredStore* monitored = nullptr;
  auto engine = edgeinf::Engine::create(ec, [&]() -> edgeinf::StatusOr<std::unique_ptr<edgeinf::SessionStore>> {
    EDGEINF_ASSIGN_OR_RETURN(std::unique_ptr<edgeinf::SessionStore> store,
                             edgeinf::server::open_session_store(*store_url, absl::GetFlag(FLAGS_store_timeout_ms)));
    auto m = std::make_unique<edgeinf::server::MonitoredStore>(std::move(store), metrics,
                                                               [&store_up](bool up) { store_up = up; });
    monitored = m.get();
    return std::unique_ptr<edgeinf::SessionStore>(std::move(m));
  });
  if (!engine.ok()) {
    spdlog::error("{}", engine.status().ToString());
    return 1;
  }
  const edgeinf::EngineInfo info = (*engine)->info();
  const edgeinf::KvPolicyOptions& kv = info.default_kv;
  spdlog::info("device {}", info.device);
  spdlog::info("model {} ({}); policy {} S={} W={} L={} KV {}; gate {}; store {}", ec.model_path,
               info.model_fingerprint, kv.name, kv.sink, kv.window, kv.segment, edgeinf::kv_type_name(kv.kv_type),
               info.gate.empty() ? "none" : info.gate, store_url->url);
  spdlog::info(
      "memory budget {} MiB: {} MiB for the model, scratch, runtime and records in flight, the rest for sessions",
      ec.memory_budget_bytes >> 20, (*engine)->fixed_bytes() >> 20);

  edgeinf::server::ServiceLimits limits;
  limits.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  limits.executor_threads = std::max(1, absl::GetFlag(FLAGS_rpc_threads));
  edgeinf::server::install_protobuf_log_handler();
  edgeinf::server::InferenceService service(**engine, *auth, metrics, limits);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(absl::GetFlag(FLAGS_listen), creds, &port);
  builder.SetMaxReceiveMessageSize(int(std::min<int64_t>(limits.max_message_bytes, INT32_MAX)));
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    spdlog::error("cannot listen on {}", absl::GetFlag(FLAGS_listen));
    return 1;
  }
  grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
  constexpr const char* kService = "edgeinfinite.v1.Inference";
  health->SetServingStatus(kService, true);
  spdlog::info("serving on {} (port {})", absl::GetFlag(FLAGS_listen), port);
  std::fflush(stdout);

  // Whether the store answers: probed every second while down, every 5 s while up.
  std::atomic<bool> stop_probe{false};
  std::thread probe([&] {
    auto next = std::chrono::steady_clock::now();
    while (!stop_probe) {
      if (std::chrono::steady_clock::now() >= next) {
        (void)monitored->ping();
        next = std::chrono::steady_clock::now() + std::chrono::seconds(store_up ? 5 : 1);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });

  std::signal(SIGTERM, on_signal);
  std::signal(SIGINT, on_signal);
  bool serving = true;
  auto refresh = [&] {
    const edgeinf::EngineStats s = (*engine)->stats();
    const size_t rss = (*engine)->enforce_memory_budget();
    edgeinf::server::Metrics::Gauges g;
    g.hot_sessions = s.sessions.hot_sessions;
    g.charged_bytes = s.sessions.charged_bytes;
    g.queued_turns = s.queued_turns;
    g.active_turns = s.active_turns;
    g.committing_turns = s.committing_turns;
    g.resident_bytes = int64_t(rss);
    g.budget_bytes = int64_t(ec.memory_budget_bytes);
    g.fixed_bytes = int64_t((*engine)->fixed_bytes());
    g.open_fds = edgeinf::server::open_fds();
    g.threads = edgeinf::server::thread_count();
    metrics.set_gauges(g);
    return s;
  };
  bool device_failed = false;
  while (!g_stop) {
    refresh();
    if (!device_failed) {
      if (const edgeinf::Status h = (*engine)->health(); !h.ok()) {
        // Out of service for good: liveness and readiness both NOT_SERVING, so the orchestrator
        // replaces the process; turns are refused meanwhile.
        spdlog::error("{}", std::string(h.message()));
        health->SetServingStatus(false);
        device_failed = true;
        serving = false;
      }
    }
    if (!device_failed && serving != store_up.load()) {
      serving = store_up;
      health->SetServingStatus(kService, serving);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }

  // Drain: health NOT_SERVING (still answering), new calls UNAVAILABLE, running ones finish.
  const int grace = absl::GetFlag(FLAGS_shutdown_grace_s);
  spdlog::info("shutting down: no new requests, {} s for those in flight", grace);
  health->SetServingStatus(false);
  service.set_draining();
  const auto deadline = std::chrono::system_clock::now() + std::chrono::seconds(grace);
  while (std::chrono::system_clock::now() < deadline) {
    const edgeinf::EngineStats s = refresh();
    if (service.in_flight() == 0 && s.queued_turns + s.active_turns + s.committing_turns == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  server->Shutdown(deadline);  // cancels what is still running at the deadline
  (*engine)->shutdown();       // every committed turn is already durable in the store
  stop_probe = true;
  probe.join();
  spdlog::info("stopped");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // A peer's closed socket (a restarted Redis, a vanished client) must be an error on that call,
  // never a signal that ends the process.
  std::signal(SIGPIPE, SIG_IGN);
  // Large buffers (session state) go straight to mmap and back to the system when freed.
  ::mallopt(M_MMAP_THRESHOLD, 256 << 10);
  return run(argc, argv);
}
