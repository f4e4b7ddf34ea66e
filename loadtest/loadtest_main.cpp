// edgeinf-loadtest: drives a running edgeinf-server and reports what its users would see.
//
//   edgeinf-loadtest [--server ADDR] [--token T] [--json FILE] [--metrics HOST:PORT] MODE [options]
//
// Modes:
//   run SCENARIO.textproto [--duration S] [--max-requests N] [--seed N]
//       a scenario file (loadtest/scenario.proto; loadtest/scenarios/ has short chats, long-document
//       summaries via Ingest, session resumes, cancel storms, mixed policies and the soak): open-loop
//       arrivals at Poisson times or closed-loop clients, bounded in time and count, drawing each
//       request from a weighted mix. Reports the achieved rate, every status code by kind,
//       percentiles of time to first token, inter-token latency and turn duration after the
//       warm-up, tokens/s, and (with --metrics) the server's resident memory, open files and
//       threads sampled every second with their steady state (after the warm-up, while requests
//       still start; the series is in the JSON). Exit 1 on any
//       unexpected status (anything but OK, CANCELLED for cancelled requests, and ABORTED where two
//       requests may race on one session).
//   chat --clients N --turns K [--max-tokens M] [--history-bytes B --text FILE]
//       shorthand: N closed-loop clients, each on its own session (first given B bytes of FILE), N*K
//       turns in all, retrying after the server's hint.
//   open --rate R --duration S [--mix chat=6,resume=3,cancel=1] [--sessions N] [--max-tokens M]
//        [--max-inflight K] [--seed N]
//       shorthand: Poisson arrivals of rate R for S seconds from the mix.
//   history --tokens 32768,131072 [--text FILE] [--max-tokens M]
//       for each length: upload that much history into a session (Ingest), then time a turn on
//       it; time the same turn on an empty session; and time re-reading the history in one
//       one-off request (what a server without session state must do). Prints TTFT of each.
//   compare A.json B.json
//       two runs' JSON side by side, with B's change against A.
// Results go to stdout as a table and, with --json FILE, as JSON.
#include <google/protobuf/text_format.h>
#include <grpcpp/grpcpp.h>

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "edgeinfinite/v1/inference.grpc.pb.h"
#include "loadtest/scenario.pb.h"

namespace v1 = edgeinfinite::v1;
using Clock = std::chrono::steady_clock;
using edgeinf::loadtest::Request;
using edgeinf::loadtest::Scenario;

namespace {

double secs(Clock::duration d) { return std::chrono::duration<double>(d).count(); }
int usage();

struct Options {
  std::string server = "127.0.0.1:50051", token, mode, json, metrics, text = "data/kjv-nt.txt";
  int max_tokens = 32;
  std::vector<int64_t> history = {32768, 131072};  // history
  std::vector<std::string> files;                  // run: the scenario; compare: two runs
  Scenario scenario;                               // what chat, open and run flags build
  double duration = -1;                            // run: overrides
  int64_t max_requests = -1, seed = -1;
};

struct TurnTiming {
  bool ok = false;
  grpc::StatusCode code = grpc::StatusCode::OK;
  int retry_after_ms = 0;  // the server's hint on RESOURCE_EXHAUSTED / UNAVAILABLE
  std::string error;
  double ttft = 0, duration = 0;
  std::vector<double> itl;
  int64_t generated = 0, prompt = 0, cached = 0;
};

std::unique_ptr<grpc::ClientContext> context(const Options& o) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  if (!o.token.empty()) ctx->AddMetadata("authorization", "Bearer " + o.token);
  return ctx;
}

int retry_hint(const grpc::ClientContext& ctx) {
  const auto& md = ctx.GetServerTrailingMetadata();
  int ms = 0;
  if (auto it = md.find("retry-after-ms"); it != md.end()) {
    (void)absl::SimpleAtoi(absl::string_view(it->second.data(), it->second.size()), &ms);
  }
  return ms;
}

// cancel_after_first: cancel the call once its first token has arrived (a user who stops reading).
TurnTiming timed_turn(v1::Inference::Stub& stub, const Options& o, const v1::GenerateRequest& req,
                      bool cancel_after_first = false) {
  TurnTiming t;
  auto ctx = context(o);
  const auto t0 = Clock::now();
  auto last = t0;
  auto reader = stub.Generate(ctx.get(), req);
  v1::GenerateEvent ev;
  bool first = true;
  while (reader->Read(&ev)) {
    if (ev.has_delta()) {
      const auto now = Clock::now();
      if (first) {
        t.ttft = secs(now - t0);
        first = false;
        if (cancel_after_first) ctx->TryCancel();
      } else {
        t.itl.push_back(secs(now - last));
      }
      last = now;
    } else if (ev.has_final()) {
      t.generated = ev.final().usage().generated_tokens();
      t.prompt = ev.final().usage().prompt_tokens();
      t.cached = ev.final().usage().cached_tokens();
      if (first) t.ttft = secs(Clock::now() - t0);
    }
  }
  const grpc::Status st = reader->Finish();
  t.duration = secs(Clock::now() - t0);
  t.ok = st.ok();
  t.code = st.error_code();
  if (!st.ok()) t.error = st.error_message();
  t.retry_after_ms = retry_hint(*ctx);
  return t;
}

// A new session ("" on failure, with *st saying why).
std::string create_session(v1::Inference::Stub& stub, const Options& o, const std::string& policy, grpc::Status* st,
                           int* hint) {
  auto ctx = context(o);
  v1::CreateSessionRequest req;
  if (!policy.empty()) req.mutable_policy()->set_name(policy);
  v1::Session s;
  *st = stub.CreateSession(ctx.get(), req, &s);
  *hint = retry_hint(*ctx);
  return st->ok() ? s.name() : "";
}

std::string create_session(v1::Inference::Stub& stub, const Options& o) {
  grpc::Status st;
  int hint = 0;
  std::string name = create_session(stub, o, "", &st, &hint);
  if (!st.ok()) {
    std::fprintf(stderr, "edgeinf-loadtest: CreateSession: %s\n", st.error_message().c_str());
    std::exit(1);
  }
  return name;
}

// Uploads text into a session with Ingest in 1 MiB pieces; *tokens: what it appended.
grpc::Status ingest(v1::Inference::Stub& stub, const Options& o, const std::string& session, const std::string& doc,
                    int64_t* tokens, int* hint) {
  auto ctx = context(o);
  v1::IngestResponse resp;
  auto w = stub.Ingest(ctx.get(), &resp);
  for (size_t off = 0; off < doc.size(); off += 1 << 20) {
    v1::IngestRequest r;
    if (off == 0) r.set_session(session);
    r.set_text(doc.substr(off, 1 << 20));
    if (!w->Write(r)) break;
  }
  w->WritesDone();
  const grpc::Status st = w->Finish();
  *tokens = resp.ingested_tokens();
  *hint = retry_hint(*ctx);
  return st;
}

bool read_file(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::stringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return true;
}

// n bytes of the corpus from a place that depends on k (wrapping around), cut at a character start.
std::string excerpt(const std::string& corpus, uint64_t k, size_t n) {
  if (corpus.empty()) return "";
  size_t from = size_t(k * 7919 * 64) % corpus.size();
  while (from > 0 && (uint8_t(corpus[from]) & 0xC0) == 0x80) --from;
  std::string doc;
  while (doc.size() < n) {
    doc += corpus.substr(from, n - doc.size());
    from = 0;
  }
  while (!doc.empty() && (uint8_t(doc.back()) & 0xC0) == 0x80) doc.pop_back();
  if (!doc.empty() && (uint8_t(doc.back()) & 0x80) != 0) doc.pop_back();
  return doc;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, size_t(p / 100.0 * double(v.size() - 1) + 0.5));
  return v[i];
}

void print_row(const char* name, const std::vector<double>& v) {
  std::printf("%-22s %6zu %9.3f %9.3f %9.3f %9.3f\n", name, v.size(), percentile(v, 50), percentile(v, 90),
              percentile(v, 99), v.empty() ? 0.0 : *std::max_element(v.begin(), v.end()));
}

int history(const Options& o, v1::Inference::Stub& stub) {
  std::string corpus;
  if (!read_file(o.text, &corpus)) {
    std::fprintf(stderr, "edgeinf-loadtest: cannot read '%s' (scripts/eval-data writes it)\n", o.text.c_str());
    return 1;
  }
  auto question = [&](const std::string& session) {
    v1::GenerateRequest req;
    req.set_session(session);
    req.set_text("\n\nQuestion: who is speaking in the last verse above? Answer:");
    req.mutable_sampling()->set_temperature(0);
    req.mutable_stop()->set_max_tokens(o.max_tokens);
    return req;
  };
  std::printf("%-10s %-28s %10s %10s %10s\n", "history", "turn", "ttft_s", "prompt", "cached");
  std::ostringstream json;
  json << "{\"scenario\":\"history\",\"runs\":[";
  bool first_json = true;
  auto report = [&](int64_t len, const char* what, const TurnTiming& t) {
    if (!t.ok) {
      std::printf("%-10lld %-28s failed: %s\n", static_cast<long long>(len), what, t.error.c_str());
      return;
    }
    std::printf("%-10lld %-28s %10.3f %10lld %10lld\n", static_cast<long long>(len), what, t.ttft,
                static_cast<long long>(t.prompt), static_cast<long long>(t.cached));
    std::fflush(stdout);
    json << (first_json ? "" : ",") << "{\"history\":" << len << ",\"turn\":\"" << what << "\",\"ttft_s\":" << t.ttft
         << ",\"prompt\":" << t.prompt << ",\"cached\":" << t.cached << "}";
    first_json = false;
  };
  const std::string empty = create_session(stub, o);
  report(0, "empty session", timed_turn(stub, o, question(empty)));
  for (int64_t target : o.history) {
    // Roughly 4 characters a token; Ingest reports what it appended.
    const std::string doc = corpus.substr(0, std::min(corpus.size(), size_t(target) * 4));
    const std::string session = create_session(stub, o);
    const auto t_in = Clock::now();
    int64_t len = 0;
    int hint = 0;
    if (const grpc::Status st = ingest(stub, o, session, doc, &len, &hint); !st.ok()) {
      std::fprintf(stderr, "edgeinf-loadtest: Ingest: %s\n", st.error_message().c_str());
      return 1;
    }
    std::fprintf(stderr, "ingested %lld tokens in %.1f s\n", static_cast<long long>(len), secs(Clock::now() - t_in));
    report(len, "session with history", timed_turn(stub, o, question(session)));
    v1::GenerateRequest again = question("");
    again.set_text(doc + again.text());
    report(len, "re-prefill history (one-off)", timed_turn(stub, o, again));
  }
  json << "]}\n";
  if (!o.json.empty()) std::ofstream(o.json) << json.str();
  return 0;
}

const char* code_name(grpc::StatusCode c) {
  switch (c) {
    case grpc::StatusCode::OK: return "OK";
    case grpc::StatusCode::CANCELLED: return "CANCELLED";
    case grpc::StatusCode::UNKNOWN: return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND: return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS: return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED: return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED: return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE: return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED: return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL: return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE: return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS: return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED: return "UNAUTHENTICATED";
    default: return "OTHER";
  }
}

// The values of unlabelled samples on a Prometheus endpoint (plain HTTP/1.0); absent ones are -1.
std::vector<double> scrape(const std::string& addr, const std::vector<std::string>& metrics) {
  std::vector<double> values(metrics.size(), -1);
  const size_t colon = addr.rfind(':');
  if (colon == std::string::npos) return values;
  addrinfo hints{}, *res = nullptr;
  hints.ai_socktype = SOCK_STREAM;
  if (getaddrinfo(addr.substr(0, colon).c_str(), addr.substr(colon + 1).c_str(), &hints, &res) != 0) return values;
  const int fd = socket(res->ai_family, res->ai_socktype, res->ai_protocol);
  if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) == 0) {
    const std::string req = "GET /metrics HTTP/1.0\r\nHost: " + addr + "\r\n\r\n";
    if (send(fd, req.data(), req.size(), 0) == ssize_t(req.size())) {
      std::string body;
      char buf[65536];
      for (ssize_t n; (n = recv(fd, buf, sizeof buf, 0)) > 0;) body.append(buf, size_t(n));
      for (size_t m = 0; m < metrics.size(); ++m) {
        const std::string key = "\n" + metrics[m] + " ";
        if (size_t at = body.find(key); at != std::string::npos) {
          const size_t from = at + key.size(), to = body.find('\n', from);
          if (!absl::SimpleAtod(absl::string_view(body).substr(from, to - from), &values[m])) values[m] = -1;
        }
      }
    }
  }
  if (fd >= 0) close(fd);
  freeaddrinfo(res);
  return values;
}

const char* kind_name(Request::Kind k) {
  switch (k) {
    case Request::CHAT: return "chat";
    case Request::RESUME: return "resume";
    case Request::SUMMARY: return "summary";
    case Request::CANCEL: return "cancel";
    default: return "unspecified";
  }
}

std::string check_scenario(const Scenario& s) {
  if (s.has_open() && !(s.open().rate() > 0)) return "open.rate must be > 0";
  if (s.has_closed() && s.closed().clients() <= 0) return "closed.clients must be > 0";
  if (!s.has_open() && !s.has_closed()) return "set open { rate: R } or closed { clients: N }";
  if (!(s.duration_s() > 0) && s.max_requests() <= 0) return "set duration_s, max_requests or both";
  if (s.mix().empty()) return "the mix is empty";
  for (const std::string& code : s.expected_codes()) {
    bool known = false;
    for (int c = 0; c <= 16; ++c) known = known || code == code_name(grpc::StatusCode(c));
    if (!known) return absl::StrCat("expected_codes: '", code, "' is not a status code name");
  }
  for (const Request& r : s.mix()) {
    if (r.kind() == Request::KIND_UNSPECIFIED) return "every request of the mix needs a kind";
    if (!(r.weight() > 0)) return absl::StrCat(kind_name(r.kind()), ": weight must be > 0");
    if (r.kind() == Request::RESUME && s.sessions().count() <= 0) return "RESUME requests need sessions { count: N }";
  }
  return "";
}

// One request's result.
struct Outcome {
  Request::Kind kind = Request::KIND_UNSPECIFIED;
  double start_s = 0, ingest_s = -1;
  int retries = 0;
  TurnTiming t;
};

struct Sample {
  double t, rss, fds, threads;
};

class ScenarioRun {
 public:
  ScenarioRun(const Options& o, v1::Inference::Stub& stub) : o_(o), s_(o.scenario), stub_(stub) {}

  int run() {
    if (const std::string why = check_scenario(s_); !why.empty()) {
      std::fprintf(stderr, "edgeinf-loadtest: the scenario: %s\n", why.c_str());
      return 2;
    }
    const bool needs_text =
        s_.sessions().history_bytes() > 0 ||
        std::any_of(s_.mix().begin(), s_.mix().end(), [](const Request& r) { return r.kind() == Request::SUMMARY; });
    const std::string text = s_.text_file().empty() ? o_.text : s_.text_file();
    if (needs_text && !read_file(text, &corpus_)) {
      std::fprintf(stderr, "edgeinf-loadtest: cannot read '%s' (scripts/eval-data writes data/kjv-*.txt)\n",
                   text.c_str());
      return 1;
    }
    for (const Request& r : s_.mix()) total_weight_ += r.weight();
    if (!make_sessions()) return 1;
    std::thread sampler([this] { sample(); });
    t0_ = Clock::now();
    if (s_.has_open()) {
      open_loop();
    } else {
      closed_loop();
    }
    wall_ = secs(Clock::now() - t0_);
    done_ = true;
    sampler.join();
    return report();
  }

 private:
  bool in_time(double at) const { return !(s_.duration_s() > 0) || at < s_.duration_s(); }
  bool in_count(int64_t i) const { return s_.max_requests() <= 0 || i < s_.max_requests(); }

  // The pool's sessions, each given its history (several uploads at once).
  bool make_sessions() {
    const int n = s_.sessions().count();
    sessions_.resize(size_t(std::max(n, 0)));
    std::atomic<int> next{0}, made{0};
    std::atomic<bool> failed{false};
    std::vector<std::thread> workers;
    for (int w = 0; w < std::min(n, 8); ++w) {
      workers.emplace_back([&] {
        for (int k; !failed && (k = next++) < n;) {
          const std::string& policy =
              s_.sessions().policies().empty() ? "" : s_.sessions().policies(k % s_.sessions().policies_size());
          Outcome out;
          const std::string doc = excerpt(corpus_, uint64_t(k), size_t(s_.sessions().history_bytes()));
          with_retries(out, [&] {
            sessions_[size_t(k)] = make_session(policy, doc, &out);
            return out.t.ok;
          });
          if (!out.t.ok) {
            std::fprintf(stderr, "edgeinf-loadtest: preparing session %d: %s\n", k, out.t.error.c_str());
            failed = true;
          }
          std::fprintf(stderr, "\rsessions ready: %d/%d", ++made, n);
        }
      });
    }
    for (std::thread& w : workers) w.join();
    if (n > 0) std::fprintf(stderr, "\n");
    return !failed;
  }

  // A session with its document ingested; on failure, out->t says why (and the session is gone).
  std::string make_session(const std::string& policy, const std::string& doc, Outcome* out) {
    grpc::Status st;
    std::string name = create_session(stub_, o_, policy, &st, &out->t.retry_after_ms);
    if (st.ok() && !doc.empty()) {
      const auto t = Clock::now();
      int64_t tokens = 0;
      st = ingest(stub_, o_, name, doc, &tokens, &out->t.retry_after_ms);
      out->ingest_s = secs(Clock::now() - t);
      if (!st.ok()) delete_session(name);
    }
    out->t.ok = st.ok();
    out->t.code = st.error_code();
    out->t.error = st.error_message();
    return st.ok() ? name : "";
  }

  void delete_session(const std::string& name) {
    auto ctx = context(o_);
    v1::DeleteSessionRequest req;
    req.set_name(name);
    v1::DeleteSessionResponse resp;
    (void)stub_.DeleteSession(ctx.get(), req, &resp);
  }

  // Runs attempt() again after the server's hint while it fails with one (if the scenario says so).
  template <typename Fn>
  void with_retries(Outcome& out, Fn attempt) {
    for (int k = 0; !attempt() && s_.retry_on_hint() && out.t.retry_after_ms > 0 && k < 60; ++k) {
      ++out.retries;
      std::this_thread::sleep_for(std::chrono::milliseconds(out.t.retry_after_ms));
      out.t = TurnTiming();
    }
  }

  const Request& draw(std::mt19937_64& rng) {
    double r = std::uniform_real_distribution<double>(0, total_weight_)(rng);
    for (const Request& q : s_.mix()) {
      if (r < q.weight()) return q;
      r -= q.weight();
    }
    return s_.mix(s_.mix_size() - 1);
  }

  // Request i of the run, drawn as r; client >= 0 in a closed loop.
  Outcome execute(int64_t i, const Request& r, int client) {
    Outcome out;
    out.kind = r.kind();
    out.start_s = secs(Clock::now() - t0_);
    const int max_tokens = r.max_tokens() > 0 ? r.max_tokens() : 32;
    v1::GenerateRequest req;
    auto* m = req.mutable_messages()->add_messages();
    m->set_role("user");
    m->set_content(absl::StrCat("Tell me something about the number ", i, "."));
    req.mutable_sampling()->set_seed(uint64_t(i));
    req.mutable_stop()->set_max_tokens(max_tokens);
    if (r.kind() == Request::RESUME) {
      req.set_session(sessions_[size_t(client >= 0 ? client : i) % sessions_.size()]);
    }
    if (r.kind() != Request::SUMMARY) {
      with_retries(out, [&] {
        out.t = timed_turn(stub_, o_, req, r.kind() == Request::CANCEL);
        return out.t.ok;
      });
      return out;
    }
    m->set_content("Summarise the document above in three sentences.");
    const std::string doc = excerpt(corpus_, uint64_t(i), size_t(r.document_bytes() > 0 ? r.document_bytes() : 16000));
    with_retries(out, [&] {
      const std::string session = make_session(r.policy(), doc, &out);
      if (session.empty()) return false;
      req.set_session(session);
      out.t = timed_turn(stub_, o_, req);
      delete_session(session);
      return out.t.ok;
    });
    return out;
  }

  void record(Outcome out) {
    std::lock_guard<std::mutex> lock(mu_);
    outcomes_.push_back(std::move(out));
  }

  void open_loop() {
    const int max_inflight = s_.open().max_inflight() > 0 ? s_.open().max_inflight() : 256;
    std::mt19937_64 rng(s_.seed());
    std::exponential_distribution<double> gap(s_.open().rate());
    std::condition_variable all_done;
    int inflight = 0;
    double at = 0;
    for (int64_t i = 0; in_count(i); ++i) {
      at += gap(rng);
      if (!in_time(at)) break;
      std::this_thread::sleep_until(t0_ +
                                    std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(at)));
      const Request& r = draw(rng);
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (inflight >= max_inflight) {  // an open loop never waits: the arrival is counted as dropped
          ++dropped_;
          continue;
        }
        ++inflight;
        ++started_;
      }
      // Detached: thousands of requests may start; the last thing each does, under the lock, is to
      // count itself out, and this function waits for the count to reach zero.
      std::thread([&, i, request = &r] {
        Outcome out = execute(i, *request, -1);
        std::lock_guard<std::mutex> lock(mu_);
        outcomes_.push_back(std::move(out));
        if (--inflight == 0) all_done.notify_all();
      }).detach();
    }
    std::unique_lock<std::mutex> lock(mu_);
    all_done.wait(lock, [&] { return inflight == 0; });
  }

  void closed_loop() {
    std::atomic<int64_t> next{0};
    std::vector<std::thread> clients;
    for (int c = 0; c < s_.closed().clients(); ++c) {
      clients.emplace_back([&, c] {
        std::mt19937_64 rng(s_.seed() * 1000003 + uint64_t(c));
        for (;;) {
          if (!in_time(secs(Clock::now() - t0_))) break;
          const int64_t i = next++;
          if (!in_count(i)) break;
          {
            std::lock_guard<std::mutex> lock(mu_);
            ++started_;
          }
          record(execute(i, draw(rng), c));
          if (s_.closed().think_s() > 0)
            std::this_thread::sleep_for(std::chrono::duration<double>(s_.closed().think_s()));
        }
      });
    }
    for (std::thread& c : clients) c.join();
  }

  void sample() {
    while (!o_.metrics.empty() && !done_) {
      const std::vector<double> v =
          scrape(o_.metrics, {"edgeinf_resident_memory_bytes", "process_open_fds", "process_threads"});
      if (v[0] >= 0) {
        std::lock_guard<std::mutex> lock(mu_);
        samples_.push_back({secs(Clock::now() - t0_), v[0], v[1], v[2]});
      }
      std::this_thread::sleep_for(std::chrono::seconds(1));
    }
  }

  // Whether a status is what the request may end with by design.
  bool expected(const Outcome& out) const {
    if (out.t.ok) return true;
    const std::string code = code_name(out.t.code);
    if (std::find(s_.expected_codes().begin(), s_.expected_codes().end(), code) != s_.expected_codes().end())
      return true;
    if (out.kind == Request::CANCEL && out.t.code == grpc::StatusCode::CANCELLED) return true;
    // Two requests on one session: the second is refused while the first runs.
    const bool may_race = s_.has_open() || s_.sessions().count() < s_.closed().clients();
    return out.kind == Request::RESUME && may_race && out.t.code == grpc::StatusCode::ABORTED;
  }

  int report();

  const Options& o_;
  const Scenario& s_;
  v1::Inference::Stub& stub_;
  std::string corpus_;
  double total_weight_ = 0;
  std::vector<std::string> sessions_;
  Clock::time_point t0_;
  double wall_ = 0;
  std::atomic<bool> done_{false};
  std::mutex mu_;
  std::vector<Outcome> outcomes_;
  std::vector<Sample> samples_;
  int64_t started_ = 0, dropped_ = 0;
};

int ScenarioRun::report() {
  std::vector<double> ttft, itl, dur, ingest_s;
  std::map<std::string, int64_t> codes;
  std::map<std::string, std::map<std::string, int64_t>> by_kind;
  int64_t generated = 0, unexpected = 0, retried = 0;
  for (const Outcome& out : outcomes_) {
    const std::string code = code_name(out.t.code);
    ++codes[code];
    ++by_kind[kind_name(out.kind)][code];
    retried += out.retries;
    if (!expected(out)) {
      if (unexpected++ < 5)
        std::fprintf(stderr, "%s failed: %s %s\n", kind_name(out.kind), code.c_str(), out.t.error.c_str());
    }
    if (!out.t.ok) continue;
    generated += out.t.generated;
    if (out.start_s < s_.warmup_s()) continue;
    ttft.push_back(out.t.ttft);
    dur.push_back(out.t.duration);
    itl.insert(itl.end(), out.t.itl.begin(), out.t.itl.end());
    if (out.ingest_s >= 0) ingest_s.push_back(out.ingest_s);
  }
  std::string code_list, kind_list;
  for (const auto& [code, n] : codes) code_list += absl::StrCat(code_list.empty() ? "" : ", ", code, " ", n);
  for (const auto& [kind, c] : by_kind) {
    std::string part;
    for (const auto& [code, n] : c) part += absl::StrCat(part.empty() ? "" : " ", code, " ", n);
    kind_list += absl::StrCat(kind_list.empty() ? "" : "; ", kind, ": ", part);
  }
  const double span = s_.duration_s() > 0 ? std::min(s_.duration_s(), wall_) : wall_;
  const std::string arrivals = s_.has_open() ? absl::StrCat("open loop ", s_.open().rate(), "/s")
                                             : absl::StrCat("closed loop ", s_.closed().clients(), " clients");
  std::printf(
      "%s: %s; %lld started (%.2f/s), %lld dropped; %.1f s; %.1f generated tokens/s; %lld retried after the "
      "server's hint; %lld unexpected\ncodes: %s\nby kind: %s\n",
      s_.description().empty() ? o_.mode.c_str() : s_.description().c_str(), arrivals.c_str(),
      static_cast<long long>(started_), double(started_) / span, static_cast<long long>(dropped_), wall_,
      double(generated) / wall_, static_cast<long long>(retried), static_cast<long long>(unexpected), code_list.c_str(),
      kind_list.c_str());
  std::printf("%-22s %6s %9s %9s %9s %9s%s\n", "seconds", "n", "p50", "p90", "p99", "max",
              s_.warmup_s() > 0 ? absl::StrCat("   (after ", s_.warmup_s(), " s of warm-up)").c_str() : "");
  print_row("time to first token", ttft);
  print_row("inter-token latency", itl);
  print_row("turn duration", dur);
  if (!ingest_s.empty()) print_row("ingest (summary)", ingest_s);

  // The server over time: all samples, and its steady state from the end of the warm-up until
  // requests stop starting (the drain after it is load going away, not a steady state); for open
  // files and threads, the first and the last sixth of it, at least 10 s each.
  std::vector<double> rss, steady_rss;
  double fds_first = 0, fds_last = 0, threads_first = 0, threads_last = 0;
  for (const Sample& x : samples_) rss.push_back(x.rss);
  const double load_end = s_.duration_s() > 0 ? std::min(s_.duration_s(), wall_) : wall_;
  std::vector<Sample> steady;
  for (const Sample& x : samples_) {
    if (x.t >= s_.warmup_s() && x.t <= load_end) steady.push_back(x), steady_rss.push_back(x.rss);
  }
  double median = 0, low = 0, high = 0;
  if (!steady.empty()) {
    const double from = steady.front().t, to = steady.back().t;
    const double edge = std::max(10.0, (to - from) / 6);
    for (const Sample& x : steady) {
      if (x.t <= from + edge)
        fds_first = std::max(fds_first, x.fds), threads_first = std::max(threads_first, x.threads);
      if (x.t >= to - edge) fds_last = std::max(fds_last, x.fds), threads_last = std::max(threads_last, x.threads);
    }
    median = percentile(steady_rss, 50);
    low = *std::min_element(steady_rss.begin(), steady_rss.end()) / median - 1;
    high = *std::max_element(steady_rss.begin(), steady_rss.end()) / median - 1;
  }
  if (!rss.empty()) {
    std::printf("server resident memory: first %.0f MiB, min %.0f, max %.0f, last %.0f (%zu samples)\n",
                rss.front() / 1048576, *std::min_element(rss.begin(), rss.end()) / 1048576,
                *std::max_element(rss.begin(), rss.end()) / 1048576, rss.back() / 1048576, rss.size());
  }
  if (!steady.empty()) {
    std::printf(
        "steady state (%zu samples, %.0f s .. %.0f s): resident memory median %.0f MiB, %+.1f%% .. %+.1f%%; "
        "open files %.0f -> %.0f; threads %.0f -> %.0f (max over the first and the last sixth)\n",
        steady.size(), s_.warmup_s(), load_end, median / 1048576, 100 * low, 100 * high, fds_first, fds_last,
        threads_first, threads_last);
  }
  if (!o_.json.empty()) {
    std::ofstream j(o_.json);
    j << "{\"scenario\":\"" << o_.mode << "\",\"started\":" << started_ << ",\"dropped\":" << dropped_
      << ",\"achieved_rate\":" << double(started_) / span << ",\"wall_s\":" << wall_
      << ",\"tokens_per_s\":" << double(generated) / wall_ << ",\"unexpected_errors\":" << unexpected
      << ",\"retried\":" << retried << ",\"ttft_p50\":" << percentile(ttft, 50)
      << ",\"ttft_p90\":" << percentile(ttft, 90) << ",\"ttft_p99\":" << percentile(ttft, 99)
      << ",\"itl_p50\":" << percentile(itl, 50) << ",\"itl_p99\":" << percentile(itl, 99)
      << ",\"duration_p50\":" << percentile(dur, 50) << ",\"duration_p99\":" << percentile(dur, 99);
    if (!ingest_s.empty()) j << ",\"ingest_p50\":" << percentile(ingest_s, 50);
    if (!rss.empty()) {
      j << ",\"rss_min\":" << *std::min_element(rss.begin(), rss.end())
        << ",\"rss_max\":" << *std::max_element(rss.begin(), rss.end()) << ",\"rss_last\":" << rss.back();
    }
    if (!steady.empty()) {
      j << ",\"steady_samples\":" << steady.size() << ",\"steady_rss_median\":" << median
        << ",\"steady_rss_low\":" << low << ",\"steady_rss_high\":" << high << ",\"steady_fds_first\":" << fds_first
        << ",\"steady_fds_last\":" << fds_last << ",\"steady_threads_first\":" << threads_first
        << ",\"steady_threads_last\":" << threads_last;
    }
    if (!samples_.empty()) {  // [seconds, resident bytes, open files, threads] every second
      j << ",\"server_samples\":[";
      for (size_t i = 0; i < samples_.size(); ++i) {
        const Sample& x = samples_[i];
        j << (i ? "," : "") << "[" << x.t << "," << x.rss << "," << x.fds << "," << x.threads << "]";
      }
      j << "]";
    }
    j << ",\"codes\":{";
    bool first = true;
    for (const auto& [code, n] : codes) j << (first ? "" : ",") << "\"" << code << "\":" << n, first = false;
    j << "}}\n";
  }
  return unexpected == 0 ? 0 : 1;
}

// The numbers of a run's JSON (top level), by key.
std::map<std::string, double> numbers_of(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string s = ss.str();
  std::map<std::string, double> out;
  int depth = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '{' || s[i] == '[') ++depth;
    if (s[i] == '}' || s[i] == ']') --depth;
    if (s[i] != '"' || depth != 1) continue;
    const size_t end = s.find('"', i + 1);
    if (end == std::string::npos || end + 1 >= s.size() || s[end + 1] != ':') continue;
    const std::string key = s.substr(i + 1, end - i - 1);
    size_t v = end + 2;
    size_t stop = s.find_first_of(",}", v);
    double x = 0;
    if (absl::SimpleAtod(absl::string_view(s).substr(v, stop - v), &x)) out[key] = x;
    i = end;
  }
  return out;
}

int compare(const Options& o) {
  if (o.files.size() != 2) return usage();
  const auto a = numbers_of(o.files[0]), b = numbers_of(o.files[1]);
  if (a.empty() || b.empty()) {
    std::fprintf(stderr, "edgeinf-loadtest: compare: no numbers in %s\n",
                 (a.empty() ? o.files[0] : o.files[1]).c_str());
    return 1;
  }
  std::printf("%-20s %14s %14s %9s\n", "", "A", "B", "B vs A");
  for (const auto& [key, x] : a) {
    auto it = b.find(key);
    if (it == b.end()) continue;
    const double y = it->second;
    std::printf("%-20s %14.4g %14.4g %8.1f%%\n", key.c_str(), x, y, x != 0 ? 100.0 * (y - x) / x : 0.0);
  }
  return 0;
}

int usage() {
  std::fputs(
      "usage: edgeinf-loadtest [--server ADDR] [--token T] [--json FILE] [--metrics HOST:PORT] MODE [options]\n"
      "  run     SCENARIO.textproto [--duration S] [--max-requests N] [--seed N]\n"
      "  chat    [--clients N] [--turns K] [--max-tokens M] [--history-bytes B --text FILE]\n"
      "  open    --rate R --duration S [--mix chat=6,resume=3,cancel=1] [--sessions N] [--max-tokens M]\n"
      "          [--max-inflight K] [--seed N]\n"
      "  history [--tokens 32768,131072] [--text FILE] [--max-tokens M]\n"
      "  compare A.json B.json\n",
      stderr);
  return 2;
}

// --mix chat=W,resume=W,cancel=W,summary=W into the scenario's mix; false if malformed.
bool parse_mix(const std::string& text, int max_tokens, Scenario* s) {
  s->clear_mix();
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    std::vector<std::string> kv = absl::StrSplit(part, '=');
    double w = 0;
    Request::Kind kind = Request::KIND_UNSPECIFIED;
    if (kv.size() != 2 || !Request::Kind_Parse(absl::AsciiStrToUpper(kv[0]), &kind) ||
        kind == Request::KIND_UNSPECIFIED || !absl::SimpleAtod(kv[1], &w) || w < 0) {
      std::fprintf(stderr,
                   "edgeinf-loadtest: --mix expects kind=weight pairs (chat, resume, cancel, summary), got '%s'\n",
                   text.c_str());
      return false;
    }
    if (w == 0) continue;
    Request* r = s->add_mix();
    r->set_kind(kind);
    r->set_weight(w);
    r->set_max_tokens(max_tokens);
  }
  return true;
}

bool load_scenario(const std::string& path, Scenario* s) {
  std::string text;
  if (!read_file(path, &text)) {
    std::fprintf(stderr, "edgeinf-loadtest: cannot read '%s'\n", path.c_str());
    return false;
  }
  if (!google::protobuf::TextFormat::ParseFromString(text, s)) {
    std::fprintf(stderr, "edgeinf-loadtest: '%s' is not a scenario (loadtest/scenario.proto, text format)\n",
                 path.c_str());
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  Options o;
  int clients = 4, turns = 4, sessions = 16, max_inflight = 256;
  int64_t history_bytes = 0;
  double rate = 2;
  std::string mix = "chat=6,resume=3,cancel=1";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--server") {
      o.server = value();
    } else if (a == "--token") {
      o.token = value();
    } else if (a == "--json") {
      o.json = value();
    } else if (a == "--metrics") {
      o.metrics = value();
    } else if (a == "--clients") {
      if (!absl::SimpleAtoi(value(), &clients) || clients <= 0) return usage();
    } else if (a == "--turns") {
      if (!absl::SimpleAtoi(value(), &turns) || turns <= 0) return usage();
    } else if (a == "--max-tokens") {
      if (!absl::SimpleAtoi(value(), &o.max_tokens) || o.max_tokens <= 0) return usage();
    } else if (a == "--history-bytes") {
      if (!absl::SimpleAtoi(value(), &history_bytes) || history_bytes < 0) return usage();
    } else if (a == "--text") {
      o.text = value();
    } else if (a == "--tokens") {
      o.history.clear();
      for (absl::string_view p : absl::StrSplit(value(), ',', absl::SkipEmpty())) {
        int64_t n = 0;
        if (!absl::SimpleAtoi(p, &n) || n <= 0) return usage();
        o.history.push_back(n);
      }
    } else if (a == "--rate") {
      if (!absl::SimpleAtod(value(), &rate) || !(rate > 0)) return usage();
    } else if (a == "--duration") {
      if (!absl::SimpleAtod(value(), &o.duration) || !(o.duration > 0)) return usage();
    } else if (a == "--max-requests") {
      if (!absl::SimpleAtoi(value(), &o.max_requests) || o.max_requests <= 0) return usage();
    } else if (a == "--mix") {
      mix = value();
    } else if (a == "--sessions") {
      if (!absl::SimpleAtoi(value(), &sessions) || sessions < 0) return usage();
    } else if (a == "--max-inflight") {
      if (!absl::SimpleAtoi(value(), &max_inflight) || max_inflight <= 0) return usage();
    } else if (a == "--seed") {
      if (!absl::SimpleAtoi(value(), &o.seed) || o.seed < 0) return usage();
    } else if (o.mode.empty() && a[0] != '-') {
      o.mode = a;
    } else if ((o.mode == "compare" || o.mode == "run") && a[0] != '-') {
      o.files.push_back(a);
    } else {
      return usage();
    }
  }
  if (o.mode == "compare") return compare(o);
  Scenario& s = o.scenario;
  if (o.mode == "run") {
    if (o.files.size() != 1 || !load_scenario(o.files[0], &s)) return usage();
  } else if (o.mode == "chat") {
    s.mutable_closed()->set_clients(clients);
    s.set_max_requests(int64_t(clients) * turns);
    s.mutable_sessions()->set_count(clients);
    s.mutable_sessions()->set_history_bytes(history_bytes);
    s.set_text_file(o.text);
    s.set_retry_on_hint(true);
    if (!parse_mix("resume=1", o.max_tokens, &s)) return 2;
  } else if (o.mode == "open") {
    s.mutable_open()->set_rate(rate);
    s.mutable_open()->set_max_inflight(max_inflight);
    s.set_duration_s(o.duration > 0 ? o.duration : 30);
    s.mutable_sessions()->set_count(sessions);
    s.set_seed(1);
    if (!parse_mix(mix, o.max_tokens, &s)) return 2;
  } else if (o.mode != "history") {
    return usage();
  }
  if (o.duration > 0) s.set_duration_s(o.duration);
  if (o.max_requests > 0) s.set_max_requests(o.max_requests);
  if (o.seed >= 0) s.set_seed(uint64_t(o.seed));
  grpc::ChannelArguments args;
  args.SetMaxSendMessageSize(-1);
  auto channel = grpc::CreateCustomChannel(o.server, grpc::InsecureChannelCredentials(), args);
  auto stub = v1::Inference::NewStub(channel);
  if (o.mode == "history") return history(o, *stub);
  return ScenarioRun(o, *stub).run();
}
