// Sessions between turns: which are in memory (idle ones in LRU order under a byte budget), what
// every context in memory costs against the process's memory budget, and the session store
// (load, commit, list, export, import, remove). Every method that touches the store blocks on it:
// call them from I/O threads, never from the scheduler's.
#pragma once

#include <cstdint>
#include <atomic>
#include <condition_variable>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "engine/model/llama_context.h"
#include "engine/session/session_meta.h"
#include "engine/session/session_store.h"
#include "engine/session/snapshot.h"

namespace edgeinf {

struct SessionInfo {
  std::string id;  // the server-generated id (the wire name is "sessions/{id}")
  KvPolicyOptions kv;
  int64_t total_tokens = 0, exact_tokens = 0, compressed_tokens = 0, dropped_tokens = 0;
  int64_t state_bytes = 0;
  int64_t create_time = 0, update_time = 0;  // unix seconds
  std::string etag;
  std::string model_fingerprint;
  std::string damage;  // ListSessions only: why the stored session cannot be read ("" when it can)
};

struct SessionManagerConfig {
  int max_sessions_per_tenant = 1000;
  size_t memory_budget_bytes = size_t(4) << 30;  // the process's footprint: fixed_bytes + contexts
  size_t fixed_bytes = 0;                        // what the process needs besides contexts (model, scratch, runtime)
  size_t hot_bytes = size_t(1) << 30;            // idle contexts kept in memory
  int max_deltas = 64;                           // delta records before a commit writes a full one
  int busy_wait_ms = 2000;                       // how long a turn waits for another to let go of its session
};

// How contexts are made and what a snapshot of them must match.
struct ContextMaker {
  // A context for the options, on the backend that runs the policy.
  std::function<StatusOr<std::unique_ptr<LlamaContext>>(const KvPolicyOptions&)> make;
  // A bare CPU policy for the options (to rebuild a state from records off any device).
  std::function<StatusOr<std::unique_ptr<KvPolicy>>(const KvPolicyOptions&)> make_policy;
  // The snapshot header of a context with those options.
  std::function<SnapshotHeader(const KvPolicyOptions&)> header;
  kernels::cpu::ThreadPool* pool = nullptr;  // for replaying deltas (the caller's thread joins it)
};

// A session held by one turn, from acquire() to release(). ctx is the turn's alone meanwhile.
struct SessionLease {
  LlamaContext* ctx = nullptr;
  KvPolicyOptions kv;
  SessionMeta meta;  // as committed before the turn
  struct Session* session = nullptr;
};

// What a turn adds to the session's metadata when it commits.
struct TurnCommit {
  TokenId pending = -1;
  std::vector<TokenId> recent;
};

struct SessionManagerStats {
  int64_t hot_sessions = 0;     // sessions with a context in memory
  int64_t charged_bytes = 0;    // what the contexts in memory are counted as (busy: their bound)
  int64_t full_commits = 0, delta_commits = 0;
  int64_t full_bytes = 0, delta_bytes = 0;  // record bytes written by commits, by kind
};

class SessionManager {
 public:
  SessionManager(const SessionManagerConfig& config, std::unique_ptr<SessionStore> store, ContextMaker maker);
  ~SessionManager();

  // A new empty session of the tenant (committed as version 1); ResourceExhausted at the tenant's
  // limit, InvalidArgument when one context of that shape exceeds the memory budget.
  StatusOr<SessionInfo> create(const std::string& tenant, const KvPolicyOptions& kv);
  // The session as stored, every record's checksum verified (DataLoss when one fails); another
  // tenant's session is NotFound.
  StatusOr<SessionInfo> get(const std::string& tenant, const std::string& id);
  // The tenant's sessions from their records' heads; a session whose head is damaged is listed
  // with `damage` set, so that it can be found and removed.
  StatusOr<std::vector<SessionInfo>> list(const std::string& tenant);
  // Removes the session (also one whose records are damaged); Aborted while a turn holds it.
  Status remove(const std::string& tenant, const std::string& id);
  // The session as one full snapshot (a chain of records is rebuilt into one).
  StatusOr<std::string> export_snapshot(const std::string& tenant, const std::string& id);
  // A full snapshot as a new session of the tenant (new id, version 1).
  StatusOr<SessionInfo> import_snapshot(const std::string& tenant, std::string_view snapshot);

  // Takes the session for a turn: its context in memory and current with the store (reloaded when
  // another replica moved it on), its bound reserved against the memory budget. Aborted while
  // another turn holds it or when `etag` (if not empty) is not the stored version; NotFound;
  // ResourceExhausted when the budget cannot make room; DataLoss for damaged records.
  StatusOr<SessionLease> acquire(const std::string& tenant, const std::string& id, const std::string& etag);
  // Commits the turn's new state (a delta record, or a full one now and then), conditional on the
  // version it started from: Aborted when another writer committed first. On success the lease's
  // meta is the new one.
  Status commit(SessionLease& lease, const TurnCommit& turn);
  // Ends the lease: keeps the context in memory (idle, LRU) when keep, else drops it (a failed or
  // uncommitted turn: the store holds the state before it).
  void release(SessionLease& lease, bool keep);

  // A context for a turn that keeps nothing, its bound reserved; ResourceExhausted without room.
  StatusOr<std::unique_ptr<LlamaContext>> one_off(const KvPolicyOptions& kv);
  void release_one_off(std::unique_ptr<LlamaContext> ctx);

  // Drops idle contexts (least recently used first) while the process's resident bytes are over
  // the budget; returns freed memory to the system.
  void enforce_budget(size_t resident_bytes);

  SessionManagerStats stats();
  // The counts a session reports for a context of a policy.
  static void count(const LlamaContext& ctx, const std::string& policy, SessionMeta* m);
  static SessionInfo info_of(const KvPolicyOptions& kv, const SessionMeta& m, const std::string& fingerprint);

 private:
  StatusOr<SessionMeta> read_owned_head(const std::string& key, const std::string& tenant, const std::string& id,
                                        KvPolicyOptions* kv, uint64_t* version, std::string* fingerprint);
  // Reads, verifies and parses a session's records (first full, then deltas, versions in a row).
  StatusOr<std::vector<StoredRecord>> read_chain(const std::string& key, const std::string& tenant,
                                                 const std::string& id);
  // Rebuilds a policy's state from a verified chain.
  Status replay(const std::vector<StoredRecord>& chain, KvPolicy& policy);
  Status commit_record(const std::string& key, SessionMeta& m, const KvPolicyOptions& kv, const KvPolicy& policy,
                       bool full, struct Session* s);
  // With the lock held: frees idle contexts until fixed + charged + need fits the budget.
  bool make_room(size_t need);
  void evict_idle_to(size_t idle_bytes);
  void evict_oldest();  // drops the least recently used idle context and forgets its session
  void drop_context(struct Session& s);
  void trim_heap();
  Status damaged(const std::string& key, const Status& st);

  SessionManagerConfig config_;
  std::unique_ptr<SessionStore> store_;
  ContextMaker maker_;

  std::mutex mu_;
  std::condition_variable released_;  // a session was let go
  std::map<std::string, std::unique_ptr<struct Session>> sessions_;
  std::list<struct Session*> lru_;  // idle sessions with a context, least recently used first
  size_t charged_ = 0;              // bytes the contexts in memory count against the budget
  size_t idle_bytes_ = 0;           // of those, idle contexts'
  std::set<std::string> damage_logged_;
  std::atomic<int64_t> last_trim_ms_{0};
  SessionManagerStats totals_;
};

}  // namespace edgeinf
