// The session store under faults, as a Kubernetes deployment meets them: Redis killed, shut down
// or paused under traffic, replicas racing on one session (one Redis, one shared directory),
// kill -9 of a replica mid-commit, a full disk, damaged records; and what a commit costs.
#include <sys/mount.h>

#include <algorithm>
#include <atomic>
#include <random>
#include <set>

#include "tests/integration/harness.h"

namespace edgeinf {
namespace {

using namespace edgeinf::testing;  // NOLINT: the harness is this file's vocabulary

// Turns on the given sessions from several threads until stopped, recording every status code.
class Traffic {
 public:
  Traffic(v1::Inference::Stub& stub, std::vector<std::string> sessions) : stub_(stub), sessions_(std::move(sessions)) {
    for (size_t i = 0; i < sessions_.size(); ++i) {
      threads_.emplace_back([this, i] {
        for (uint64_t seed = 1; !stop_; ++seed) {
          grpc::ClientContext ctx;
          ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
          const Turn t = generate(stub_, text_request(sessions_[i], " and then", 4, seed), "", -1, 30000);
          std::lock_guard<std::mutex> lock(mu_);
          codes_.push_back(t.status.error_code());
          if (t.status.error_code() == grpc::StatusCode::UNAVAILABLE && !t.retry_hint) ++unhinted_;
          if (!t.status.ok() && t.status.error_code() != grpc::StatusCode::UNAVAILABLE) {
            other_.insert(t.status.error_message());
          }
          if (!t.status.ok()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
      });
    }
  }
  ~Traffic() { stop(); }
  void stop() {
    stop_ = true;
    for (std::thread& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  int count(grpc::StatusCode c) {
    std::lock_guard<std::mutex> lock(mu_);
    return int(std::count(codes_.begin(), codes_.end(), c));
  }
  int total() {
    std::lock_guard<std::mutex> lock(mu_);
    return int(codes_.size());
  }
  int unhinted() {
    std::lock_guard<std::mutex> lock(mu_);
    return unhinted_;
  }
  std::set<std::string> other() {
    std::lock_guard<std::mutex> lock(mu_);
    return other_;
  }

 private:
  v1::Inference::Stub& stub_;
  std::vector<std::string> sessions_;
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::vector<grpc::StatusCode> codes_;
  int unhinted_ = 0;
  std::set<std::string> other_;
};

bool wait_until(const std::function<bool()>& cond, double seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

TEST(StoreFaults, RedisKilledOrShutDownUnderTrafficNeverTakesTheServerDown) {
  Redis redis(/*append_only=*/true);  // fsync'd AOF: committed sessions survive the restarts
  auto s = Server::start(redis.url(), {"--store_timeout_ms=1000"});
  std::vector<std::string> sessions;
  for (int i = 0; i < 3; ++i) sessions.push_back(create_session(*s->stub));
  for (int sig : {SIGKILL, SIGTERM, SIGKILL}) {
    Traffic traffic(*s->stub, sessions);
    ASSERT_TRUE(wait_until([&] { return traffic.count(grpc::StatusCode::OK) >= 3; }, 60));
    using Clock = std::chrono::steady_clock;
    auto since = [](Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); };
    const Clock::time_point stopped = Clock::now();
    redis.stop(sig);
    // Turns fail with UNAVAILABLE and a retry hint; the readiness check says the store is down.
    ASSERT_TRUE(wait_until([&] { return traffic.count(grpc::StatusCode::UNAVAILABLE) >= 2; }, 30)) << s->proc->log();
    const double to_errors = since(stopped);
    EXPECT_TRUE(
        wait_until([&] { return health_status(s->channel, "edgeinfinite.v1.Inference") == "NOT_SERVING"; }, 10));
    const double to_not_ready = since(stopped);
    EXPECT_EQ(health_status(s->channel, ""), "SERVING") << "the process itself stays live";
    EXPECT_TRUE(s->proc->running()) << "signal " << sig << ": " << describe_exit(s->proc->exit_status()) << "\n"
                                    << s->proc->log();
    const Clock::time_point restarted = Clock::now();
    redis.start();
    // The server reconnects by itself and turns succeed again.
    const int ok_before = traffic.count(grpc::StatusCode::OK);
    EXPECT_TRUE(wait_until([&] { return traffic.count(grpc::StatusCode::OK) >= ok_before + 1; }, 30)) << s->proc->log();
    const double to_ok = since(restarted);
    EXPECT_TRUE(wait_until([&] { return health_status(s->channel, "edgeinfinite.v1.Inference") == "SERVING"; }, 10));
    const double to_ready = since(restarted);
    EXPECT_TRUE(wait_until([&] { return traffic.count(grpc::StatusCode::OK) >= ok_before + 3; }, 30)) << s->proc->log();
    traffic.stop();
    std::printf(
        "Redis stopped with signal %d: turns UNAVAILABLE after %.2f s, readiness NOT_SERVING after %.2f s; "
        "%d of %d turns UNAVAILABLE (%d without a retry hint); restarted: a turn OK after %.2f s, "
        "readiness SERVING after %.2f s\n",
        sig, to_errors, to_not_ready, traffic.count(grpc::StatusCode::UNAVAILABLE), traffic.total(), traffic.unhinted(),
        to_ok, to_ready);
    EXPECT_EQ(traffic.unhinted(), 0) << "every UNAVAILABLE carries retry-after-ms";
    EXPECT_TRUE(traffic.other().empty()) << "unexpected errors: " << *traffic.other().begin();
    ASSERT_TRUE(s->proc->running()) << describe_exit(s->proc->exit_status()) << "\n" << s->proc->log();
  }
  // Nothing committed was lost: every session reads back whole.
  for (const std::string& name : sessions) {
    v1::Session info;
    EXPECT_TRUE(get_session(*s->stub, name, &info).ok());
    EXPECT_GT(info.total_tokens(), 0);
  }
  const std::string metrics = scrape(*s);
  EXPECT_GT(metric(metrics, "edgeinf_session_store_errors_total{op=\"commit\"}") +
                metric(metrics, "edgeinf_session_store_errors_total{op=\"read_head\"}"),
            0);
  EXPECT_EQ(metric(metrics, "edgeinf_session_store_up"), 1);
}

TEST(StoreFaults, RedisPausedTimesOutAndDoesNotStallOtherStreams) {
  Redis redis;
  auto s = Server::start(redis.url(), {"--store_timeout_ms=500"});
  const std::string a = create_session(*s->stub);
  ASSERT_TRUE(generate(*s->stub, text_request(a, kStory, 4, 1)).status.ok());
  redis.pause();
  // A turn and GetSession end with UNAVAILABLE near the store's deadline, not the client's.
  const auto t0 = std::chrono::steady_clock::now();
  const Turn t = generate(*s->stub, text_request(a, " and then", 4, 2), "", -1, 20000);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(t.status.error_code(), grpc::StatusCode::UNAVAILABLE) << t.status.error_message();
  EXPECT_TRUE(t.retry_hint);
  EXPECT_LT(took, 10.0);
  v1::Session info;
  EXPECT_EQ(get_session(*s->stub, a, &info).error_code(), grpc::StatusCode::UNAVAILABLE);
  // The scheduler is not held up: a turn without a session runs meanwhile.
  const Turn one_off = generate(*s->stub, text_request("", "Hello", 4, 3), "", -1, 20000);
  EXPECT_TRUE(one_off.status.ok()) << one_off.status.error_message();
  // Health and metrics report the store down.
  EXPECT_TRUE(wait_until([&] { return health_status(s->channel, "edgeinfinite.v1.Inference") == "NOT_SERVING"; }, 10));
  EXPECT_EQ(metric(scrape(*s), "edgeinf_session_store_up"), 0);
  redis.resume();
  EXPECT_TRUE(wait_until([&] { return health_status(s->channel, "edgeinfinite.v1.Inference") == "SERVING"; }, 15));
  const Turn after = generate(*s->stub, text_request(a, " and then", 4, 2));
  EXPECT_TRUE(after.status.ok()) << after.status.error_message();
  EXPECT_EQ(metric(scrape(*s), "edgeinf_session_store_up"), 1);
}

// Two replicas on one store race on one session, round after round: a loser gets ABORTED, no two
// winners share an etag, and the session holds exactly the turns that were acknowledged.
void race_two_replicas(const std::string& store, int rounds, bool with_etag) {
  auto s1 = Server::start(store);
  auto s2 = Server::start(store);
  const std::string a = create_session(*s1->stub);
  v1::Session info;
  ASSERT_TRUE(get_session(*s1->stub, a, &info).ok());
  int64_t expected_tokens = info.total_tokens();
  std::set<std::string> etags;
  int aborted = 0, ok = 0;
  for (int round = 0; round < rounds; ++round) {
    ASSERT_TRUE(get_session(*s1->stub, a, &info).ok());
    Turn results[2];
    std::atomic<int> ready{0};
    std::thread racers[2];
    for (int r = 0; r < 2; ++r) {
      racers[r] = std::thread([&, r] {
        v1::GenerateRequest req = text_request(a, r == 0 ? " Monday" : " Tuesday", 6, uint64_t(round * 2 + r));
        if (with_etag) req.set_etag(info.etag());
        ++ready;
        while (ready < 2) std::this_thread::yield();
        results[r] = generate(r == 0 ? *s1->stub : *s2->stub, req);
      });
    }
    for (std::thread& t : racers) t.join();
    int winners = 0;
    for (const Turn& t : results) {
      if (t.status.ok()) {
        ++winners;
        ++ok;
        EXPECT_TRUE(etags.insert(t.final.etag()).second) << "two acknowledged turns with etag " << t.final.etag();
        expected_tokens += t.final.usage().prompt_tokens() + t.final.usage().generated_tokens();
      } else {
        EXPECT_EQ(t.status.error_code(), grpc::StatusCode::ABORTED) << t.status.error_message();
        ++aborted;
      }
    }
    if (with_etag) {
      EXPECT_LE(winners, 1) << "round " << round;
    }
    EXPECT_GE(winners, 1) << "round " << round;
  }
  // Every acknowledged turn is in the session, read from either replica.
  for (Server* s : {s1.get(), s2.get()}) {
    ASSERT_TRUE(get_session(*s->stub, a, &info).ok());
    EXPECT_EQ(info.total_tokens(), expected_tokens);
  }
  EXPECT_GT(aborted, 0) << "the replicas never collided in " << rounds << " rounds";
  std::printf("%d rounds: %d turns acknowledged, %d refused with ABORTED\n", rounds, ok, aborted);
}

TEST(StoreFaults, TwoReplicasOnOneRedisNeverLoseAnAcknowledgedTurn) {
  Redis redis;
  race_two_replicas(redis.url(), 10, false);
  race_two_replicas(redis.url(), 6, true);
}

TEST(StoreFaults, TwoReplicasOnOneDirectoryNeverLoseAnAcknowledgedTurn) {
  const std::string store = temp_store();
  race_two_replicas(store, 10, false);
  race_two_replicas(store, 6, true);
}

// kill -9 at random moments while three clients commit: turns on one session (decode), Ingest
// uploads into another, and snapshot imports (whole-snapshot writes); with --max_deltas=3 every
// fourth commit of a session writes its full snapshot. After each restart, every session holds
// exactly what was acknowledged, or that plus the one operation in flight, never part of it: its
// token count is one of the two, it reads back and takes another turn. EDGEINF_CRASH_COMMITS sets
// how many commits to reach (scripts/crash-test runs 1,000; CI a few dozen).
class CrashClients {
 public:
  struct Kind {
    std::atomic<int64_t> acked{0};  // acknowledged commits
    int64_t in_flight_at_kill = 0;  // kills while an operation of this kind ran
    int64_t found_unacked = 0;      // operations found committed after a kill, their answer lost
  };

  CrashClients(const std::string& doc, const std::string& snapshot, int64_t snapshot_tokens)
      : doc_(doc), snapshot_(snapshot), snapshot_tokens_(snapshot_tokens) {}

  // Checks the stored state after a restart against what was acknowledged; learns the sessions on
  // the first call.
  void check(Server& s) {
    if (turns_session_.empty()) {
      // The sessions, past their first operation (which adds BOS), and what one more operation
      // of each kind adds, known before the first kill (which may cut off the first answer).
      turns_session_ = create_session(*s.stub);
      ingest_session_ = create_session(*s.stub);
      const auto t0 = std::chrono::steady_clock::now();
      for (uint64_t seed : {1, 2}) {
        const Turn t = generate(*s.stub, turn_request(seed));
        ASSERT_TRUE(t.status.ok()) << t.status.error_message();
        if (seed == 2) learn(&turn_delta_, t.final.session_tokens() - turn_tokens_, "turn");
        turn_tokens_ = t.final.session_tokens();
        v1::IngestResponse resp;
        ASSERT_TRUE(ingest(*s.stub, ingest_session_, {doc_}, &resp).ok());
        if (seed == 2) learn(&ingest_delta_, resp.session().total_tokens() - ingest_tokens_, "ingest");
        ingest_tokens_ = resp.session().total_tokens();
      }
      ASSERT_GT(turn_delta_, 0);
      ASSERT_GT(ingest_delta_, 0);
      operation_s_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / 4;
    }
    check_counted(s, turns_session_, turns_, &turn_tokens_, &turn_delta_, "turns");
    check_counted(s, ingest_session_, ingests_, &ingest_tokens_, &ingest_delta_, "ingest");
    // Imports: the acknowledged one is whole; an unacknowledged one is whole or absent.
    grpc::ClientContext ctx;
    v1::ListSessionsRequest req;
    req.set_page_size(1000);
    v1::ListSessionsResponse list;
    ASSERT_TRUE(s.stub->ListSessions(&ctx, req, &list).ok());
    bool acked_found = imported_.empty();
    for (const v1::Session& x : list.sessions()) {
      if (x.name() == turns_session_ || x.name() == ingest_session_) continue;
      const bool stale = x.name() == imported_stale_;  // its deletion was cut short
      EXPECT_TRUE(x.damage().empty()) << x.name() << ": " << x.damage();
      EXPECT_EQ(x.total_tokens(), snapshot_tokens_) << "an imported session is partly present";
      if (x.name() == imported_) {
        acked_found = true;
      } else {
        if (!stale) ++imports_.found_unacked;
        EXPECT_TRUE(delete_session(*s.stub, x.name()).ok());
      }
    }
    EXPECT_TRUE(acked_found) << "the acknowledged import " << imported_ << " is lost";
  }

  // Runs the three clients until stop(); then the server is killed.
  void start(Server& s) {
    stop_ = false;
    busy_turn_ = busy_ingest_ = busy_import_ = false;
    threads_.emplace_back([this, &s] {
      for (uint64_t seed = 2; !stop_; ++seed) {
        busy_turn_ = true;
        const Turn t = generate(*s.stub, turn_request(seed));
        if (t.status.ok()) {
          learn(&turn_delta_, t.final.session_tokens() - turn_tokens_, "turn");
          turn_tokens_ = t.final.session_tokens();
          ++turns_.acked;
          busy_turn_ = false;
        } else {
          std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the server is gone
        }
      }
    });
    threads_.emplace_back([this, &s] {
      while (!stop_) {
        v1::IngestResponse resp;
        busy_ingest_ = true;
        if (ingest(*s.stub, ingest_session_, {doc_}, &resp).ok()) {
          learn(&ingest_delta_, resp.session().total_tokens() - ingest_tokens_, "ingest");
          ingest_tokens_ = resp.session().total_tokens();
          ++ingests_.acked;
          busy_ingest_ = false;
        } else {
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
      }
    });
    threads_.emplace_back([this, &s] {
      while (!stop_) {
        v1::Session made;
        busy_import_ = true;
        if (!import_session(*s.stub, snapshot_, &made).ok()) {
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
          continue;
        }
        ASSERT_EQ(made.total_tokens(), snapshot_tokens_);
        const std::string previous = imported_;
        imported_ = made.name();
        ++imports_.acked;
        busy_import_ = false;
        if (!previous.empty()) {  // keep one imported session: the store stays small
          imported_stale_ = delete_session(*s.stub, previous).ok() ? "" : previous;
        }
      }
    });
  }

  // Stops the clients after the kill; counts what was in flight.
  void stop() {
    turns_.in_flight_at_kill += busy_turn_ ? 1 : 0;
    ingests_.in_flight_at_kill += busy_ingest_ ? 1 : 0;
    imports_.in_flight_at_kill += busy_import_ ? 1 : 0;
    stop_ = true;
    for (std::thread& t : threads_) t.join();
    threads_.clear();
  }

  int64_t commits() const { return turns_.acked + ingests_.acked + imports_.acked; }
  // How long one turn or upload took on the first server (seconds, their mean).
  double operation_s() const { return operation_s_; }
  std::string summary() const {
    auto one = [](const char* name, const Kind& k) {
      return std::string(name) + " " + std::to_string(k.acked.load()) + " acknowledged, " +
             std::to_string(k.in_flight_at_kill) + " in flight at a kill, " + std::to_string(k.found_unacked) +
             " found committed without their answer";
    };
    return one("turns", turns_) + "; " + one("ingests", ingests_) + "; " + one("imports", imports_);
  }

 private:
  // The stored count is the acknowledged one, or that plus the operation in flight.
  void check_counted(Server& s, const std::string& name, Kind& kind, int64_t* acked, const int64_t* delta,
                     const char* what) {
    v1::Session info;
    const grpc::Status st = get_session(*s.stub, name, &info);
    ASSERT_TRUE(st.ok()) << what << ": " << st.error_message();
    if (info.total_tokens() != *acked) {
      ASSERT_GT(*delta, 0) << what << ": " << info.total_tokens() << " tokens stored, " << *acked << " acknowledged";
      ASSERT_EQ(info.total_tokens(), *acked + *delta) << what << ": part of an operation is present (acknowledged "
                                                      << *acked << ", one more adds " << *delta << ")";
      ++kind.found_unacked;
      *acked = info.total_tokens();
    }
  }
  v1::GenerateRequest turn_request(uint64_t seed) const {
    v1::GenerateRequest req = text_request(turns_session_, " Then", 6, seed);
    req.mutable_stop()->set_ignore_eos(true);  // every turn adds the same number of tokens
    return req;
  }
  void learn(int64_t* delta, int64_t seen, const char* what) {
    if (*delta == 0) *delta = seen;
    EXPECT_EQ(seen, *delta) << "every " << what << " adds the same tokens";
  }

  const std::string doc_, snapshot_;
  const int64_t snapshot_tokens_;
  std::string turns_session_, ingest_session_, imported_, imported_stale_;
  int64_t turn_tokens_ = 0, turn_delta_ = 0, ingest_tokens_ = 0, ingest_delta_ = 0;
  double operation_s_ = 0;
  Kind turns_, ingests_, imports_;
  std::atomic<bool> stop_{false}, busy_turn_{false}, busy_ingest_{false}, busy_import_{false};
  std::vector<std::thread> threads_;
};

TEST(StoreFaults, KillDashNineAtRandomMomentsLosesNoCommittedTurnAndLeavesNoHalfTurn) {
  const char* env = std::getenv("EDGEINF_CRASH_COMMITS");
  const int64_t target = env != nullptr ? std::atoll(env) : 30;
  // The shipped shape: a session's full snapshot is tens of MB, so kills land inside writes.
  const std::string store = temp_store();
  const std::vector<std::string> shape = {"--window=1020", "--segment=512", "--kv_type=f32", "--max_deltas=3"};
  const std::string doc = kStory;  // short: its prefill does not hold up the turns for long
  std::string snapshot;
  int64_t snapshot_tokens = 0;
  {
    auto s = Server::start(temp_store(), shape);
    const std::string a = create_session(*s->stub);
    v1::IngestResponse resp;
    std::string history;
    for (int i = 0; i < 12; ++i) history += kStory;  // more than the window: a full-size snapshot
    ASSERT_TRUE(ingest(*s->stub, a, {history}, &resp).ok());
    snapshot_tokens = resp.session().total_tokens();
    ASSERT_TRUE(export_session(*s->stub, a, &snapshot).ok());
  }
  CrashClients clients(doc, snapshot, snapshot_tokens);
  std::mt19937 rng(5);
  int kills = 0;
  const auto t0 = std::chrono::steady_clock::now();
  while (clients.commits() < target) {
    auto s = Server::start(store, shape);
    clients.check(*s);
    if (::testing::Test::HasFatalFailure()) return;
    clients.start(*s);
    // A kill 0.5 s to 5 s after the start, or up to 20 operations' time where they are slow (an
    // instrumented build), so that operations complete between kills as well as get cut.
    const int window_ms = std::max(4500, int(20000 * clients.operation_s()));
    std::this_thread::sleep_for(std::chrono::milliseconds(500 + int(rng() % uint32_t(window_ms))));
    const bool alive = s->proc->running();  // else it ended by itself: a crash, not this kill
    s->proc->stop(SIGKILL);
    ++kills;
    clients.stop();
    ASSERT_TRUE(alive) << "the server ended before the kill:\n" << s->proc->log();
    if (::testing::Test::HasFatalFailure()) return;
  }
  auto s = Server::start(store, shape);
  clients.check(*s);
  EXPECT_TRUE(generate(*s->stub, text_request("", " The end.", 4, 9)).status.ok());
  std::printf("%d kills, %lld commits acknowledged in %.0f s: %s\n", kills, static_cast<long long>(clients.commits()),
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), clients.summary().c_str());
}

// The record files of a dir:// session, oldest first.
std::vector<fs::path> records_of(const std::string& store, const std::string& name) {
  const std::string id = name.substr(name.find('/') + 1);
  std::vector<fs::path> out;
  for (const auto& d : fs::directory_iterator(store.substr(6))) {
    const std::string dir = d.path().filename().string();
    if (dir.size() > id.size() && dir.compare(dir.size() - id.size(), id.size(), id) == 0) {
      for (const auto& f : fs::directory_iterator(d.path())) {
        if (f.path().filename().string()[0] != '.') out.push_back(f.path());
      }
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

void flip_byte(const fs::path& file, size_t at_from_end) {
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(0, std::ios::end);
  const std::streamoff size = f.tellg();
  const std::streamoff at = size - std::streamoff(at_from_end);
  f.seekg(at);
  char c = 0;
  f.read(&c, 1);
  c = char(c ^ 0x5a);
  f.seekp(at);
  f.write(&c, 1);
}

TEST(StoreFaults, DamagedRecordsAreDataLossOnEveryReadPathAndLoggedOnce) {
  const std::string store = temp_store();
  auto s = Server::start(store);
  const std::string a = create_session(*s->stub), b = create_session(*s->stub);
  for (const std::string& name : {a, b}) {
    ASSERT_TRUE(generate(*s->stub, text_request(name, kStory, 4, 1)).status.ok());
    ASSERT_TRUE(generate(*s->stub, text_request(name, " Then", 4, 2)).status.ok());
  }
  s.reset();  // nothing in memory: every read goes to the files
  // a: a byte of its newest record's body; b: a byte of its newest record's header.
  flip_byte(records_of(store, a).back(), 100);
  {
    const fs::path newest = records_of(store, b).back();
    const size_t size = fs::file_size(newest);
    flip_byte(newest, size - 24 - 70);  // past the file header, inside the snapshot header section
  }
  s = Server::start(store);
  v1::Session info;
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(get_session(*s->stub, a, &info).error_code(), grpc::StatusCode::DATA_LOSS);
  }
  {
    grpc::ClientContext ctx;
    v1::ExportSessionRequest req;
    req.set_name(a);
    auto r = s->stub->ExportSession(&ctx, req);
    v1::SnapshotChunk c;
    size_t got = 0;
    while (r->Read(&c)) got += c.data().size();
    EXPECT_EQ(r->Finish().error_code(), grpc::StatusCode::DATA_LOSS);
    EXPECT_EQ(got, 0u) << "no damaged byte is handed out";
  }
  EXPECT_EQ(generate(*s->stub, text_request(a, " More", 4, 3)).status.error_code(), grpc::StatusCode::DATA_LOSS);
  // Listed, marked damaged, and removable.
  {
    grpc::ClientContext ctx;
    v1::ListSessionsResponse list;
    ASSERT_TRUE(s->stub->ListSessions(&ctx, v1::ListSessionsRequest(), &list).ok());
    ASSERT_EQ(list.sessions_size(), 2);
    int damaged = 0;
    for (const v1::Session& x : list.sessions()) {
      if (x.name() == b) {
        EXPECT_FALSE(x.damage().empty());
      }
      damaged += !x.damage().empty();
    }
    EXPECT_EQ(damaged, 1) << "a's head is intact; only b's is damaged";
  }
  EXPECT_TRUE(delete_session(*s->stub, b).ok());
  EXPECT_EQ(get_session(*s->stub, b, &info).error_code(), grpc::StatusCode::NOT_FOUND);
  // Logged, once per damage.
  const std::string log = s->proc->log();
  const std::string id_a = a.substr(a.find('/') + 1);
  size_t lines = 0;
  for (size_t at = log.find(id_a + " is damaged"); at != std::string::npos;
       at = log.find(id_a + " is damaged", at + 1)) {
    ++lines;
  }
  EXPECT_EQ(lines, 1u) << log;
}

TEST(StoreFaults, CommitsWriteWhatTheTurnChanged) {
  // The shipped shape: a full snapshot of a long session is ~70 MB.
  const std::string store = temp_store();
  auto s = Server::start(store, {"--window=1020", "--segment=512", "--kv_type=f32"});
  const std::string a = create_session(*s->stub);
  std::string doc;
  for (int i = 0; i < 30; ++i) doc += kStory;  // ~2,200 tokens: past S + W + L, memory folded
  v1::IngestResponse ingested;
  ASSERT_TRUE(ingest(*s->stub, a, {doc}, &ingested).ok());
  ASSERT_GT(ingested.session().compressed_tokens(), 0);
  auto written = [&](const char* kind) {
    return metric(scrape(*s), std::string("edgeinf_session_store_written_bytes_total{kind=\"") + kind + "\"}");
  };
  const double full_before = std::max(0.0, written("full")), delta_before = std::max(0.0, written("delta"));
  const auto newest = records_of(store, a).back();
  const double full_size = double(fs::file_size(newest));
  ASSERT_GT(full_size, 30e6);
  for (int turn = 0; turn < 4; ++turn) {
    const double before = std::max(0.0, written("delta")) + std::max(0.0, written("full"));
    const Turn t = generate(*s->stub, text_request(a, " What did the keeper count?", 12, uint64_t(turn)));
    ASSERT_TRUE(t.status.ok()) << t.status.error_message();
    const double bytes = std::max(0.0, written("delta")) + std::max(0.0, written("full")) - before;
    const int64_t tokens = t.final.usage().prompt_tokens() + t.final.usage().generated_tokens();
    std::printf("turn of %lld tokens wrote %.2f MB (a full snapshot is %.1f MB)\n", static_cast<long long>(tokens),
                bytes / 1e6, full_size / 1e6);
    // 46,080 bytes of K and V per token for this model, the memory (1.5 MB) when tokens were folded.
    EXPECT_LT(bytes, double(tokens) * 46080 + 2e6) << "turn " << turn;
    EXPECT_LT(bytes, full_size / 10);
  }
  EXPECT_EQ(written("full"), full_before) << "no full snapshot was needed";
  EXPECT_GT(written("delta"), delta_before);
}

TEST(StoreFaults, RedisCompactsTheChainAndReplicasReadIt) {
  Redis redis;
  auto s1 = Server::start(redis.url(), {"--max_deltas=3"});
  auto s2 = Server::start(redis.url(), {"--max_deltas=3"});
  const std::string a = create_session(*s1->stub);
  const std::string key_pattern = "edgeinf:s:*" + a.substr(a.find('/') + 1);
  for (int turn = 0; turn < 9; ++turn) {
    Server& s = turn % 2 == 0 ? *s1 : *s2;  // alternate replicas: each reads the other's records
    const Turn t = generate(*s.stub, text_request(a, turn == 0 ? kStory : " and", 4, uint64_t(turn)));
    ASSERT_TRUE(t.status.ok()) << t.status.error_message();
    const std::string keys = redis.cli("--scan --pattern '" + key_pattern + "'");
    const std::string key = keys.substr(0, keys.find('\n'));
    const int fields = std::stoi(redis.cli("hlen " + key));
    // v, t, h and the records: a full one and at most max_deltas deltas.
    EXPECT_LE(fields, 3 + 1 + 3) << "turn " << turn;
  }
  v1::Session from1, from2;
  ASSERT_TRUE(get_session(*s1->stub, a, &from1).ok());
  ASSERT_TRUE(get_session(*s2->stub, a, &from2).ok());
  EXPECT_EQ(from1.etag(), from2.etag());
  EXPECT_EQ(from1.total_tokens(), from2.total_tokens());
}

TEST(StoreFaults, AFullDiskRefusesCommitsClearlyAndKeepsTheStateBefore) {
  // The dir:// store on a small tmpfs (mounting needs root; elsewhere the test says so and skips).
  const std::string mnt = temp_path("fulldisk");
  fs::create_directories(mnt);
  if (::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=24m") != 0) {
    GTEST_SKIP() << "cannot mount a tmpfs at " << mnt << " (" << std::strerror(errno)
                 << "): a full disk is tested as root";
  }
  struct Unmount {
    std::string dir;
    ~Unmount() { ::umount2(dir.c_str(), MNT_DETACH); }
  } unmount{mnt};
  auto s = Server::start("dir://" + mnt + "/store");
  const std::string a = create_session(*s->stub), b = create_session(*s->stub);
  for (const std::string& name : {a, b}) {
    const Turn first = generate(*s->stub, text_request(name, kStory, 8, 1));
    ASSERT_TRUE(first.status.ok()) << first.status.error_message();
  }
  v1::Session before;
  ASSERT_TRUE(get_session(*s->stub, a, &before).ok());

  // Fill the disk.
  const std::string filler = mnt + "/filler";
  {
    FILE* f = std::fopen(filler.c_str(), "w");
    ASSERT_NE(f, nullptr);
    const std::string block(1 << 16, 'x');
    while (std::fwrite(block.data(), 1, block.size(), f) == block.size() && std::fflush(f) == 0) {
    }
    std::fclose(f);
  }
  const Turn refused = generate(*s->stub, text_request(a, " And then the rain came.", 8, 2));
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << refused.status.error_message();
  EXPECT_NE(refused.status.error_message().find("the disk is full"), std::string::npos)
      << refused.status.error_message();
  // The session is as it was before the refused turn, and the replica keeps serving.
  v1::Session after;
  ASSERT_TRUE(get_session(*s->stub, a, &after).ok());
  EXPECT_EQ(after.etag(), before.etag());
  EXPECT_EQ(after.total_tokens(), before.total_tokens());
  EXPECT_EQ(health_status(s->channel, "edgeinfinite.v1.Inference"), "SERVING");
  const Turn one_off = generate(*s->stub, text_request("", "Hello", 4, 3));
  EXPECT_TRUE(one_off.status.ok()) << one_off.status.error_message();
  v1::Session other;
  EXPECT_TRUE(get_session(*s->stub, b, &other).ok()) << "another session still reads back";
  std::printf(
      "full disk: the turn refused in %.2f s with RESOURCE_EXHAUSTED (\"%s\"); the session kept etag %s and "
      "%lld tokens; readiness SERVING; a one-off turn and another session's read served\n",
      std::chrono::duration<double>(refused.ended - refused.started).count(), refused.status.error_message().c_str(),
      after.etag().c_str(), static_cast<long long>(after.total_tokens()));

  // Room again: the session continues from the state before the refused turn.
  fs::remove(filler);
  const Turn again = generate(*s->stub, text_request(a, " And then the rain came.", 8, 2));
  ASSERT_TRUE(again.status.ok()) << again.status.error_message();
  EXPECT_EQ(again.final.usage().cached_tokens(), before.total_tokens());
  s->proc->stop();
}

}  // namespace
}  // namespace edgeinf
