// edgeinf-server: loads the model, opens the session store, and serves edgeinfinite.v1.Inference
// with grpc.health.v1 and server reflection on one port and Prometheus metrics on another.
// Every flag can also come from the environment as EDGEINF_<FLAG> (the command line wins).
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <prometheus/exposer.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "server/redis_store.h"
#include "server/service.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:50051", "gRPC address (host:port)");
ABSL_FLAG(std::string, metrics_listen, "127.0.0.1:9464", "Prometheus /metrics address; empty = off");
ABSL_FLAG(std::string, model, "models/SmolLM2-135M-Instruct.Q4_1.gguf", "GGUF model");
ABSL_FLAG(std::string, gate, "", "memory gate file (default MODEL.gate.gguf if present; 'none' = no gate)");
ABSL_FLAG(std::string, store, "dir://sessions", "session store: dir://PATH or redis://HOST:PORT");
ABSL_FLAG(int, threads, 0, "compute threads (0 = every core)");
ABSL_FLAG(std::string, device, "auto", "cpu, cuda, or auto (cuda when a CUDA device can be used, else cpu)");
ABSL_FLAG(std::string, policy, "edgeinfinite", "default KV policy of sessions and one-off requests");
ABSL_FLAG(int, sink, -1, "sink tokens (default: the gate's, else 4)");
ABSL_FLAG(int, window, -1, "window tokens (default: the gate's, else 1024)");
ABSL_FLAG(int, segment, -1, "segment tokens (default: the gate's, else 512)");
ABSL_FLAG(std::string, auth_tokens, "", "file of 'SHA256(token) tenant' lines; empty = no authentication");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate chain; with --tls_key serves TLS");
ABSL_FLAG(std::string, tls_key, "", "PEM private key");
ABSL_FLAG(int64_t, max_message_bytes, 4 << 20, "largest request message");
ABSL_FLAG(int64_t, max_prompt_tokens, 1 << 20, "largest prompt of one Generate request, in tokens");
ABSL_FLAG(int, max_tokens_limit, 4096, "largest max_tokens a request may ask for");
ABSL_FLAG(int, max_sessions_per_tenant, 1000, "sessions one tenant may hold");
ABSL_FLAG(int64_t, memory_budget_mb, 4096, "attention state of all live contexts (admission), MiB");
ABSL_FLAG(int64_t, hot_mb, 1024, "idle session state kept in memory (LRU), MiB");
ABSL_FLAG(int, shutdown_grace_s, 30, "seconds in-flight requests get to finish on SIGTERM");

namespace {

std::atomic<bool> g_stop{false};
void on_signal(int) { g_stop = true; }

// EDGEINF_<NAME> environment variables become flags unless the command line sets them.
std::vector<std::string> args_with_environment(int argc, char** argv) {
  static const char* kNames[] = {"listen", "metrics_listen", "model", "gate", "store", "threads", "device", "policy",
                                 "sink", "window", "segment", "auth_tokens", "tls_cert", "tls_key", "max_message_bytes",
                                 "max_prompt_tokens", "max_tokens_limit", "max_sessions_per_tenant",
                                 "memory_budget_mb", "hot_mb", "shutdown_grace_s"};
  std::vector<std::string> args = {argv[0]};
  for (const char* name : kNames) {
    const std::string env = "EDGEINF_" + absl::AsciiStrToUpper(name);
    if (const char* v = std::getenv(env.c_str())) args.push_back(absl::StrCat("--", name, "=", v));
  }
  for (int i = 1; i < argc; ++i) args.emplace_back(argv[i]);  // later flags override earlier ones
  return args;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int run(int argc, char** argv) {
  absl::SetProgramUsageMessage("Serves edgeinfinite.v1.Inference (streamed generation over sessions).");
  std::vector<std::string> args = args_with_environment(argc, argv);
  std::vector<char*> cargs;
  for (std::string& a : args) cargs.push_back(a.data());
  absl::ParseCommandLine(int(cargs.size()), cargs.data());

  auto store = edgeinf::server::open_session_store(absl::GetFlag(FLAGS_store));
  if (!store.ok()) {
    spdlog::error("{}", store.status().ToString());
    return 1;
  }
  auto auth = edgeinf::server::Auth::load(absl::GetFlag(FLAGS_auth_tokens));
  if (!auth.ok()) {
    spdlog::error("{}", auth.status().ToString());
    return 1;
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
  ec.max_prompt_tokens = absl::GetFlag(FLAGS_max_prompt_tokens);
  ec.max_tokens_limit = absl::GetFlag(FLAGS_max_tokens_limit);
  ec.max_sessions_per_tenant = absl::GetFlag(FLAGS_max_sessions_per_tenant);
  ec.memory_budget_bytes = size_t(absl::GetFlag(FLAGS_memory_budget_mb)) << 20;
  ec.hot_bytes = size_t(absl::GetFlag(FLAGS_hot_mb)) << 20;
  const std::string store_url = (*store)->url();
  auto engine = edgeinf::Engine::create(ec, std::move(*store));
  if (!engine.ok()) {
    spdlog::error("{}", engine.status().ToString());
    return 1;
  }
  const edgeinf::KvPolicyOptions& kv = (*engine)->default_kv();
  const edgeinf::ModelBackend* backend = (*engine)->backend();
  spdlog::info("device {}", edgeinf::device_label(backend));
  spdlog::info("model {} ({}); policy {} S={} W={} L={}; gate {}; store {}", ec.model_path,
               (*engine)->model().gguf().fingerprint(), kv.name, kv.sink, kv.window, kv.segment,
               (*engine)->gate() ? edgeinf::gate_kind_name((*engine)->gate()->config().kind) : "none", store_url);

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

  edgeinf::server::ServiceLimits limits;
  limits.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  edgeinf::server::InferenceService service(**engine, *auth, metrics, limits);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  std::shared_ptr<grpc::ServerCredentials> creds = grpc::InsecureServerCredentials();
  if (!absl::GetFlag(FLAGS_tls_cert).empty() || !absl::GetFlag(FLAGS_tls_key).empty()) {
    grpc::SslServerCredentialsOptions ssl;
    ssl.pem_key_cert_pairs.push_back({read_file(absl::GetFlag(FLAGS_tls_key)), read_file(absl::GetFlag(FLAGS_tls_cert))});
    creds = grpc::SslServerCredentials(ssl);
  }
  int port = 0;
  builder.AddListeningPort(absl::GetFlag(FLAGS_listen), creds, &port);
  builder.SetMaxReceiveMessageSize(int(std::min<int64_t>(limits.max_message_bytes, INT32_MAX)));
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    spdlog::error("cannot listen on {}", absl::GetFlag(FLAGS_listen));
    return 1;
  }
  server->GetHealthCheckService()->SetServingStatus("edgeinfinite.v1.Inference", true);
  spdlog::info("serving on {} (port {})", absl::GetFlag(FLAGS_listen), port);
  std::fflush(stdout);

  std::signal(SIGTERM, on_signal);
  std::signal(SIGINT, on_signal);
  while (!g_stop) {
    const edgeinf::EngineStats s = (*engine)->stats();
    metrics.set_gauges(s.hot_sessions, s.live_state_bytes, s.queued_turns, s.active_turns);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  spdlog::info("shutting down: no new requests, {} s for those in flight", absl::GetFlag(FLAGS_shutdown_grace_s));
  server->GetHealthCheckService()->SetServingStatus(false);
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(absl::GetFlag(FLAGS_shutdown_grace_s)));
  (*engine)->shutdown();  // every committed turn is already durable in the store
  spdlog::info("stopped");
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return run(argc, argv); }
