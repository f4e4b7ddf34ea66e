// The engine behind the service: one model, its tokenizer and memory gate, sessions that keep
// their attention state between turns, and one scheduler thread that runs every turn in small
// steps (a prefill segment or one decode token at a time, round-robin), so a long upload never
// starves the other streams. No gRPC here: server/ adapts this API to the wire.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/kv/memory_gate.h"
#include "engine/model/llama_context.h"
#include "engine/runtime/generator.h"
#include "engine/session/session_store.h"
#include "engine/tokenizer/tokenizer.h"

namespace edgeinf {

struct SnapshotView;

struct EngineConfig {
  std::string model_path;
  std::string gate_path;             // "" = MODEL.gate.gguf if present; "none" = no gate
  int threads = 0;                   // 0 = every core
  std::string device = "auto";       // cpu, cuda, or auto (cuda when a device can be used)
  std::string default_policy = "edgeinfinite";
  KvShapeRequest shape;              // S, W, L, update: unset = the gate's, else the engine defaults
  int64_t max_prompt_tokens = 1 << 20;    // per Generate request (the service checks it; Ingest is exempt)
  int max_tokens_limit = 4096;            // cap on a request's max_tokens
  int max_sessions_per_tenant = 1000;
  size_t memory_budget_bytes = size_t(4) << 30;  // attention state of all live contexts (admission)
  size_t hot_bytes = size_t(1) << 30;            // idle sessions kept in memory (LRU) within the budget
};

struct SessionInfo {
  std::string id;  // the server-generated id (the wire name is "sessions/{id}")
  KvPolicyOptions kv;
  int64_t total_tokens = 0, exact_tokens = 0, compressed_tokens = 0, dropped_tokens = 0;
  int64_t state_bytes = 0;
  int64_t create_time = 0, update_time = 0;  // unix seconds
  std::string etag;
  std::string model_fingerprint;
};

struct TurnUsage {
  int64_t prompt_tokens = 0, cached_tokens = 0, generated_tokens = 0;
  int64_t exact_tokens = 0, compressed_tokens = 0, dropped_tokens = 0, state_bytes = 0;
  double ttft_s = 0, prefill_tok_s = 0, decode_tok_s = 0;
};

struct TurnRequest {
  std::string tenant;
  std::string session_id;  // "" = a one-off turn that keeps nothing
  std::string etag;        // "" = any; else the turn is refused (ABORTED) if the session moved on
  std::vector<TokenId> tokens;
  GenerateOptions gen;
  int64_t progress_every = 0;  // prefill progress events every this many tokens (0 = each segment)
};

// Called on the engine's thread; keep them short (queue the event and return).
struct TurnEvents {
  std::function<void(int64_t done, int64_t total)> progress;
  std::function<void(std::string text, std::vector<TokenId> ids)> delta;
  std::function<bool()> cancelled;  // polled before every step
};

struct TurnResult {
  FinishReason finish = FinishReason::kLength;
  TurnUsage usage;
  std::string etag;
  int64_t session_tokens = 0;
};

struct EngineStats {
  int64_t active_turns = 0, queued_turns = 0, hot_sessions = 0;
  int64_t live_state_bytes = 0;
};

class Engine {
 public:
  static StatusOr<std::unique_ptr<Engine>> create(const EngineConfig& config, std::unique_ptr<SessionStore> store);
  ~Engine();

  const LlamaModel& model() const { return *model_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  const MemoryGate* gate() const { return gate_.get(); }
  // The device backend contexts run on (nullptr: the CPU). With device "auto", policies the device
  // does not run stay on the CPU.
  const ModelBackend* backend() const { return backend_.get(); }
  const EngineConfig& config() const { return config_; }
  // The default policy and shape of new sessions.
  const KvPolicyOptions& default_kv() const { return default_kv_; }
  SessionStore& store() { return *store_; }

  // Sessions, scoped by tenant: another tenant's session is NotFound.
  StatusOr<SessionInfo> create_session(const std::string& tenant, const std::string& policy,
                                       const KvShapeRequest& shape);
  StatusOr<SessionInfo> get_session(const std::string& tenant, const std::string& id);
  StatusOr<std::vector<SessionInfo>> list_sessions(const std::string& tenant);
  Status delete_session(const std::string& tenant, const std::string& id);
  StatusOr<std::string> export_session(const std::string& tenant, const std::string& id);
  StatusOr<SessionInfo> import_session(const std::string& tenant, const std::string& snapshot);

  // Queues a turn; `done` is called exactly once, on the engine thread, after the session's new
  // state is durable (or with the error; a failed or cancelled turn leaves the session as it was).
  void submit(TurnRequest request, TurnEvents events, std::function<void(StatusOr<TurnResult>)> done);

  // Stops taking turns (UNAVAILABLE), lets the running and queued ones finish, joins the thread.
  void shutdown();
  EngineStats stats();

 private:
  struct Session;
  struct Turn;
  Engine(const EngineConfig& config, std::unique_ptr<SessionStore> store);
  void loop();
  Status start_turn(Turn& t);
  // One step of a turn: true when it has finished (done() called).
  bool step_turn(Turn& t);
  void finish_turn(Turn& t, StatusOr<TurnResult> result);
  StatusOr<Session*> load_session(const std::string& tenant, const std::string& id, bool need_context);
  Status commit_session(Session& s);
  // Registers a new session of the tenant (kv, meta and context set; id, tenant and key assigned
  // here) within the tenant's session limit, and commits it to the store.
  StatusOr<SessionInfo> add_session(const std::string& tenant, std::unique_ptr<Session> s);
  void drop_context(Session& s);
  void evict_idle_contexts(size_t keep_bytes);
  StatusOr<std::unique_ptr<LlamaContext>> new_context(const KvPolicyOptions& kv) const;
  // A context holding a snapshot's state; FailedPrecondition for another model, shape or gate.
  StatusOr<std::unique_ptr<LlamaContext>> restore_context(const SnapshotView& v) const;
  std::string gate_id(const KvPolicyOptions& kv) const;

  EngineConfig config_;
  std::unique_ptr<LlamaModel> model_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<MemoryGate> gate_;
  KvPolicyOptions default_kv_;
  size_t one_off_state_bytes_ = 0;  // state of a default-policy context: what a one-off turn needs
  std::unique_ptr<SessionStore> store_;
  std::unique_ptr<kernels::cpu::ThreadPool> pool_;
  std::unique_ptr<ModelBackend> backend_;  // before state_: contexts on the device go first

  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace edgeinf
