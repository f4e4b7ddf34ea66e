// Sessions between turns: which are in memory (idle ones in LRU order under a byte budget), what
// every context in memory costs against the process's memory budget, and the session store
// (load, commit, list, export, import, remove). Every method that touches the store blocks on it:
// call them from I/O threads, never from the scheduler's.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "engine/runtime/llama_context.h"
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
  size_t io_bytes = size_t(256) << 20;           // records in flight (part of fixed_bytes)
  int max_deltas = 64;                           // delta records before a commit writes a full one
  int busy_wait_ms = 2000;                       // how long a turn waits for another to let go of its session
};

// Memory for session records in flight (being written to or read from the store), bounded so
// that I/O buffers never push the process past its budget: a reservation waits until the records
// in flight leave room for it (or runs alone when it is larger than the whole allowance).
class IoMemory {
 public:
  explicit IoMemory(size_t limit) : limit_(limit) {}
  // Held bytes, given back on destruction.
  class Hold {
   public:
    Hold() = default;
    Hold(IoMemory* owner, size_t bytes) : owner_(owner), bytes_(bytes) {}
    Hold(Hold&& o) noexcept : owner_(o.owner_), bytes_(o.bytes_) { o.owner_ = nullptr; }
    Hold& operator=(Hold&& o) noexcept;
    ~Hold() { release(); }
    void release();
    size_t bytes() const { return bytes_; }

   private:
    IoMemory* owner_ = nullptr;
    size_t bytes_ = 0;
  };
  Hold reserve(size_t bytes);                     // waits for room
  std::optional<Hold> try_reserve(size_t bytes);  // nullopt when there is no room now
  size_t limit() const { return limit_; }
  size_t in_use();

 private:
  void give_back(size_t bytes);
  const size_t limit_;
  std::mutex mu_;
  std::condition_variable cv_;
  size_t used_ = 0;
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
  std::function<void()> on_room;             // called when contexts gave memory back (keep it short)
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
  int64_t hot_sessions = 0;   // sessions with a context in memory
  int64_t charged_bytes = 0;  // what the contexts in memory are counted as (busy: their bound)
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
  // The session as one full snapshot (a chain of records is rebuilt into one); *hold keeps the
  // bytes counted as I/O memory for as long as the caller keeps them.
  StatusOr<std::string> export_snapshot(const std::string& tenant, const std::string& id, IoMemory::Hold* hold);
  // A full snapshot as a new session of the tenant (new id, version 1). The caller counts the
  // snapshot as I/O memory: three times its size (the bytes, the state, the record).
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

  // acquire() and one_off() refuse with this status when the budget has no room (the caller may
  // wait for on_room and try again).
  static bool no_room(const Status& st) {
    return st.code() == absl::StatusCode::kResourceExhausted && st.message() == kNoRoom;
  }
  static constexpr const char* kNoRoom = "the server's memory budget is in use; retry shortly";
  // A context for a turn that keeps nothing, its bound reserved; ResourceExhausted without room.
  StatusOr<std::unique_ptr<LlamaContext>> one_off(const KvPolicyOptions& kv);
  void release_one_off(std::unique_ptr<LlamaContext> ctx);

  // Drops idle contexts (least recently used first) while the process's resident bytes are over
  // the budget; returns freed memory to the system.
  void enforce_budget(size_t resident_bytes);

  SessionManagerStats stats();
  IoMemory& io_memory() { return io_; }
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
  // Writes the state as version m.version: a delta unless `full` or the policy has none (or the
  // deltas would outweigh the full record). reserve_io: count the record's buffers as I/O memory
  // (false when the caller's reservation covers them).
  Status commit_record(const std::string& key, SessionMeta& m, const KvPolicyOptions& kv, const KvPolicy& policy,
                       bool full, struct Session* s, bool reserve_io);
  // With the lock held: frees idle contexts until fixed + charged + need fits the budget.
  bool make_room(size_t need);
  void evict_idle_to(size_t idle_bytes);
  void evict_oldest();  // drops the least recently used idle context and forgets its session
  void drop_context(struct Session& s);
  void trim_heap();
  Status damaged(const std::string& key, const Status& st);
  // The most a session of these options can hold (memoised: it takes making a policy).
  size_t bound_of(const KvPolicyOptions& kv);
  // I/O memory for reading a chain of a session of these options (at most a full record's worth
  // of deltas after the full one: twice its bound), times the store's copies.
  IoMemory::Hold reserve_chain(const KvPolicyOptions& kv);

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
  std::map<std::string, size_t> bounds_;
  IoMemory io_;
};

}  // namespace edgeinf
