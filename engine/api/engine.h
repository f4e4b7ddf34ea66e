// The engine behind the service: one model, its tokenizer and memory gate, sessions that keep
// their attention state between turns (engine/session), and a step scheduler
// (engine/runtime/step_scheduler.h) whose one thread runs every turn in small steps (a prefill segment or one decode
// token at a time, round-robin), so a long upload never starves the other streams. Session I/O (loading a session,
// committing a turn) runs on a small pool of I/O threads, never on the scheduler's: a slow or absent store delays only
// the turns that need it. No gRPC here: server/ adapts this API to the wire.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "engine/kv/kv_shape.h"
#include "engine/kv/memory_gate.h"
#include "engine/runtime/generator.h"
#include "engine/runtime/llama_context.h"
#include "engine/runtime/step_scheduler.h"
#include "engine/session/session_manager.h"
#include "engine/session/session_store.h"
#include "engine/tokenizer/chat_template.h"
#include "engine/tokenizer/tokenizer.h"

namespace edgeinf {

struct EngineConfig {
  std::string model_path;
  std::string gate_path;        // "" = MODEL.gate.gguf if present; "none" = no gate
  int threads = 0;              // 0 = every core
  std::string device = "auto";  // cpu, cuda, or auto (cuda when a device can be used)
  std::string default_policy = "edgeinfinite";
  KvShapeRequest shape;                 // S, W, L, update: unset = the gate's, else the engine defaults
  int64_t max_prompt_tokens = 1 << 20;  // per turn that asks for the limit (Generate; not Ingest)
  int max_tokens_limit = 4096;          // cap on a request's max_tokens
  int max_sessions_per_tenant = 1000;
  // The process's memory: model, scratch and every context in memory (admission counts each busy
  // context at its bound, each idle one at what it holds); idle contexts beyond hot_bytes go.
  size_t memory_budget_bytes = size_t(4) << 30;
  size_t hot_bytes = size_t(1) << 30;
  int io_threads = 4;                   // session loads and commits in parallel
  int max_deltas = 64;                  // delta records per session before a commit writes a full one
  size_t io_bytes = size_t(256) << 20;  // session records in flight (part of the budget's fixed part)
  int admission_wait_ms = 10000;        // how long a turn waits for room in the budget before RESOURCE_EXHAUSTED
  // Opens the backends the engine runs on; unset: open_backends(device, ...). Tests put backends
  // of their own here.
  std::function<StatusOr<Backends>(const LlamaModel&, kernels::cpu::ThreadPool&)> open_backends;
};

struct TurnUsage {
  // Tokens of this turn's input (with BOS when it opens a conversation), of the session before it
  // (every earlier input and output token), and sampled in it (with an end-of-generation token,
  // which ends the text and stays in the session's history). session_tokens after the turn =
  // cached + prompt + generated.
  int64_t prompt_tokens = 0, cached_tokens = 0, generated_tokens = 0;
  int64_t exact_tokens = 0, compressed_tokens = 0, dropped_tokens = 0, state_bytes = 0;
  double ttft_s = 0, prefill_tok_s = 0, decode_tok_s = 0;
};

// Input that arrives while its turn runs (Ingest): the producer appends tokens and closes it; the
// turn prefills what has arrived and ends (and commits) only after close(). Thread-safe.
class TurnInput {
 public:
  // Appends tokens (without BOS: the engine adds it when the turn opens a conversation).
  void append(std::vector<TokenId> tokens);
  // No more input: the turn ends once it has prefilled everything.
  void close();
  // The input cannot be completed: the turn fails with `why` and commits nothing.
  void abort(Status why);
  // Tokens appended and not yet taken by the turn.
  size_t waiting() const;
  // Calls on_room once (from the engine's thread; keep it short) when fewer than `low` tokens
  // wait; at once if that is already so. Never called after the turn has ended.
  void when_below(size_t low, std::function<void()> on_room);

 private:
  friend class Engine;
  struct Taken {
    std::vector<TokenId> tokens;
    bool closed = false;
    Status aborted;
  };
  Taken take(size_t max);                   // the engine: up to max tokens, and whether the input ended
  void attach(std::function<void()> wake);  // the engine: called whenever input arrives
  void detach();                            // the engine: the turn ended

  mutable std::mutex mu_;
  std::vector<TokenId> tokens_;
  size_t taken_ = 0;
  bool closed_ = false, detached_ = false;
  Status aborted_;
  std::function<void()> wake_, on_room_;
  size_t low_ = 0;
};

// What a turn reads: plain text, chat messages or token ids. The engine tokenizes it once it knows
// whether the turn opens a conversation (a one-off turn or an empty session: BOS and the chat
// template's default system message) or continues one.
struct TurnPrompt {
  enum class Kind { kNone, kText, kMessages, kTokenIds };
  Kind kind = Kind::kNone;  // kNone: only streamed input (TurnRequest::stream)
  std::string text;
  std::vector<ChatMessage> messages;  // roles system, user, assistant; rendered with the model's template
  std::vector<TokenId> token_ids;
};

struct TurnRequest {
  std::string tenant;
  std::string session_id;             // "" = a one-off turn that keeps nothing
  std::string etag;                   // "" = any; else the turn is refused (ABORTED) if the session moved on
  TurnPrompt prompt;                  // a bad prompt (empty, unknown role, ...) ends the turn with InvalidArgument
  bool limit_prompt = true;           // refuse inputs over max_prompt_tokens
  std::shared_ptr<TurnInput> stream;  // more input arriving while the turn runs, or null
  GenerateOptions gen;
  int64_t progress_every = 0;  // prefill progress events every this many tokens (0 = each segment)
};

// Called on engine threads; keep them short (queue the event and return).
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
  // max_tokens ended the turn inside a multi-byte character: its first bytes, which no text delta
  // carries (deltas hold whole characters).
  std::string incomplete_bytes;
  SessionInfo session;  // a session turn's session after it
};

struct EngineStats {
  int64_t queued_turns = 0;      // waiting for their session or for the scheduler
  int64_t active_turns = 0;      // being run by the scheduler
  int64_t committing_turns = 0;  // writing their new state
  SessionManagerStats sessions;
};

// What the engine serves, for a service's description of itself.
struct EngineInfo {
  std::string model_name, model_fingerprint;
  int native_context = 0;             // the model's trained context
  std::vector<std::string> policies;  // every registered KV policy
  KvPolicyOptions default_kv;         // the default policy and shape of new sessions
  std::string gate;                   // the memory gate ("linear (calibration 0123...)"), "" if none
  std::string device;                 // "cpu", or the device and its description
};

class Engine {
 public:
  // Loads the model, then opens the store (so a failed start leaves nothing behind).
  static StatusOr<std::unique_ptr<Engine>> create(const EngineConfig& config,
                                                  std::function<StatusOr<std::unique_ptr<SessionStore>>()> open_store);
  ~Engine();

  EngineInfo info() const;
  // OK while the engine can serve. After a device failure (ModelBackend::failure) it is out of
  // service for good: turns are refused with UNAVAILABLE, and the process should be replaced.
  Status health() const;
  // The text's tokens (no BOS); parse_special: control tokens written in the text become their ids.
  std::vector<TokenId> tokenize(std::string_view text, bool parse_special) const;
  const EngineConfig& config() const { return config_; }
  // The default policy and shape of new sessions.
  const KvPolicyOptions& default_kv() const { return default_kv_; }
  // What the process needs besides contexts, counted against the memory budget.
  size_t fixed_bytes() const { return fixed_bytes_; }

  // Sessions, scoped by tenant: another tenant's session is NotFound. These block on the store:
  // call them from a thread that may wait.
  StatusOr<SessionInfo> create_session(const std::string& tenant, const std::string& policy,
                                       const KvShapeRequest& shape, int budget, int context);
  StatusOr<SessionInfo> get_session(const std::string& tenant, const std::string& id);
  StatusOr<std::vector<SessionInfo>> list_sessions(const std::string& tenant);
  Status delete_session(const std::string& tenant, const std::string& id);
  // The session as one full snapshot; the hold counts its bytes as I/O memory while kept.
  struct Exported {
    std::string bytes;
    IoMemory::Hold hold;
  };
  StatusOr<Exported> export_session(const std::string& tenant, const std::string& id);
  // The caller counts the snapshot in io_memory() (three times its size) while it imports.
  StatusOr<SessionInfo> import_session(const std::string& tenant, const std::string& snapshot);
  // Memory for records in flight: session loads, commits, exports and imports share it.
  IoMemory& io_memory() { return sessions_->io_memory(); }

  // A turn's checks that need no session, as submit() makes them: sampling, max_tokens, the
  // prompt's tokens (fresh: as a turn that opens a conversation), the prompt limit, the
  // vocabulary. Returns the prompt's tokens.
  StatusOr<std::vector<TokenId>> check_turn(const TurnRequest& request, bool fresh) const;

  // Queues a turn; `done` is called exactly once, on an engine thread, after the session's new
  // state is durable (or with the error; a failed or cancelled turn leaves the session as it was).
  void submit(TurnRequest request, TurnEvents events, std::function<void(StatusOr<TurnResult>)> done);

  // Measures the process's resident memory and drops idle contexts while it is over the budget;
  // returns what it measured.
  size_t enforce_memory_budget();

  // Stops taking turns (UNAVAILABLE), lets the running and queued ones finish, joins the threads.
  void shutdown();
  EngineStats stats();

 private:
  struct Turn;
  Engine(const EngineConfig& config);
  // On an I/O thread: the session (or a one-off context), the input, the sampler.
  Status prepare_turn(Turn& t);
  // One step of a turn on the scheduler: its result once it has ended, else nullopt; *worked is
  // set when the step did something (not only waited for streamed input).
  std::optional<StatusOr<TurnResult>> step_turn(Turn& t, bool* worked);
  // Takes streamed input into the turn; true when it has tokens to prefill or has ended.
  bool pull_stream(Turn& t, Status* failed);
  // The round's batched decode: feeds every decoding turn its sampled token.
  Status feed(std::span<StepScheduler::Job* const> jobs);
  // Ends a turn: its usage, a session turn's commit (on an I/O thread), the session's release, done.
  void end_turn(Turn& t, StatusOr<TurnResult> result);
  StatusOr<std::unique_ptr<LlamaContext>> new_context(const KvPolicyOptions& kv) const;
  // check_turn's two halves: the options (checked before the session is read) and the tokens.
  Status check_options(const TurnRequest& r) const;
  StatusOr<std::vector<TokenId>> turn_tokens(const TurnRequest& r, bool fresh) const;
  // A turn's prompt as tokens; fresh: the turn opens a conversation.
  StatusOr<std::vector<TokenId>> prompt_tokens(const TurnPrompt& prompt, bool fresh) const;
  std::string gate_id(const KvPolicyOptions& kv) const;

  EngineConfig config_;
  std::unique_ptr<LlamaModel> model_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<MemoryGate> gate_;
  KvPolicyOptions default_kv_;
  size_t fixed_bytes_ = 0;
  std::unique_ptr<kernels::cpu::ThreadPool> pool_;     // the scheduler's compute threads
  std::unique_ptr<kernels::cpu::ThreadPool> io_pool_;  // replaying deltas on I/O threads (inline)
  Backends backends_;                                  // before sessions_: device contexts go first
  std::unique_ptr<SessionManager> sessions_;
  std::unique_ptr<StepScheduler> scheduler_;  // after sessions_: its turns hold sessions
};

}  // namespace edgeinf
