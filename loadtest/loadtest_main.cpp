// edgeinf-loadtest: drives a running edgeinf-server and reports latency percentiles.
//
//   edgeinf-loadtest [--server ADDR] [--token T] SCENARIO [options]
//
// Scenarios:
//   chat --clients N --turns K [--max-tokens M] [--history-bytes B --text FILE]
//       N concurrent clients, each with its own session, K turns each; reports time to first
//       token, inter-token latency and turn duration (p50/p90/p99/max) and tokens/s overall.
//       With --history-bytes, each client first uploads B bytes of FILE (from its own offset)
//       into its session, so the sessions hold full windows.
//   history --tokens 32768,131072 [--text FILE] [--max-tokens M]
//       for each length: upload that much history into a session (Ingest), then time a turn on
//       it; time the same turn on an empty session; and time re-reading the history in one
//       one-off request (what a server without session state must do). Prints TTFT of each.
//   open --rate R --duration S [--mix chat=6,resume=3,cancel=1] [--sessions N] [--max-tokens M]
//        [--max-inflight K] [--metrics HOST:PORT] [--seed N]
//       open-loop arrivals: requests start at Poisson times of rate R per second for S seconds,
//       whether or not earlier ones have finished (what many independent users do), drawn from
//       the mix: one-off chat turns, turns resuming one of N sessions, and turns cancelled after
//       their first token. Reports the achieved rate, percentiles, tokens/s, every status code,
//       and (with --metrics) the server's resident memory sampled every second.
//   compare A.json B.json
//       two runs' JSON side by side, with B's change against A.
// Results go to stdout as a table and, with --json FILE, as JSON.
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

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "edgeinfinite/v1/inference.grpc.pb.h"

namespace v1 = edgeinfinite::v1;
using Clock = std::chrono::steady_clock;

namespace {

double secs(Clock::duration d) { return std::chrono::duration<double>(d).count(); }
int usage();

struct Options {
  std::string server = "127.0.0.1:50051", token, scenario, json, text = "data/kjv-nt.txt";
  int clients = 4, turns = 4, max_tokens = 32;
  int64_t history_bytes = 0;
  std::vector<int64_t> history = {32768, 131072};
  // open
  double rate = 2, duration = 30;
  std::string mix = "chat=6,resume=3,cancel=1", metrics;
  int sessions = 16, max_inflight = 256;
  uint64_t seed = 1;
  std::vector<std::string> files;  // compare
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
  const auto& md = ctx->GetServerTrailingMetadata();
  if (auto it = md.find("retry-after-ms"); it != md.end()) {
    (void)absl::SimpleAtoi(absl::string_view(it->second.data(), it->second.size()), &t.retry_after_ms);
  }
  return t;
}

std::string create_session(v1::Inference::Stub& stub, const Options& o) {
  auto ctx = context(o);
  v1::Session s;
  const grpc::Status st = stub.CreateSession(ctx.get(), v1::CreateSessionRequest(), &s);
  if (!st.ok()) {
    std::fprintf(stderr, "edgeinf-loadtest: CreateSession: %s\n", st.error_message().c_str());
    std::exit(1);
  }
  return s.name();
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

int chat(const Options& o, v1::Inference::Stub& stub) {
  std::string corpus;
  if (o.history_bytes > 0) {
    std::ifstream in(o.text, std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "edgeinf-loadtest: cannot read '%s'\n", o.text.c_str());
      return 1;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    corpus = ss.str();
  }
  std::mutex mu;
  std::vector<double> ttft, itl, dur;
  int64_t generated = 0, errors = 0, retries = 0;
  const auto t0 = Clock::now();
  std::vector<std::thread> threads;
  for (int c = 0; c < o.clients; ++c) {
    threads.emplace_back([&, c] {
      const std::string session = create_session(stub, o);
      if (o.history_bytes > 0 && !corpus.empty()) {
        const size_t from = (size_t(c) * 7919 * 64) % corpus.size();
        std::string doc = corpus.substr(from, size_t(o.history_bytes));
        if (doc.size() < size_t(o.history_bytes)) doc += corpus.substr(0, size_t(o.history_bytes) - doc.size());
        grpc::Status st;
        for (int attempt = 0; attempt < 60; ++attempt) {
          auto ctx = context(o);
          v1::IngestResponse resp;
          auto w = stub.Ingest(ctx.get(), &resp);
          v1::IngestRequest r;
          r.set_session(session);
          r.set_text(doc);
          w->Write(r);
          w->WritesDone();
          st = w->Finish();
          const auto& md = ctx->GetServerTrailingMetadata();
          auto it = md.find("retry-after-ms");
          int wait_ms = 0;
          if (st.ok() || it == md.end() ||
              !absl::SimpleAtoi(absl::string_view(it->second.data(), it->second.size()), &wait_ms)) {
            break;
          }
          {
            std::lock_guard<std::mutex> lock(mu);
            ++retries;
          }
          std::this_thread::sleep_for(std::chrono::milliseconds(wait_ms));
        }
        if (!st.ok()) {
          std::lock_guard<std::mutex> lock(mu);
          ++errors;
          std::fprintf(stderr, "ingest failed: %s\n", st.error_message().c_str());
        }
      }
      for (int k = 0; k < o.turns; ++k) {
        v1::GenerateRequest req;
        req.set_session(session);
        auto* m = req.mutable_messages()->add_messages();
        m->set_role("user");
        m->set_content(absl::StrCat("Tell me something about the number ", c * 100 + k, "."));
        req.mutable_sampling()->set_seed(uint64_t(c * 1000 + k));
        req.mutable_stop()->set_max_tokens(o.max_tokens);
        TurnTiming t = timed_turn(stub, o, req);
        // A server out of room or without its store says when to come back: wait and retry.
        for (int attempt = 0; !t.ok && t.retry_after_ms > 0 && attempt < 60; ++attempt) {
          {
            std::lock_guard<std::mutex> lock(mu);
            ++retries;
          }
          std::this_thread::sleep_for(std::chrono::milliseconds(t.retry_after_ms));
          t = timed_turn(stub, o, req);
        }
        std::lock_guard<std::mutex> lock(mu);
        if (!t.ok) {
          ++errors;
          std::fprintf(stderr, "turn failed: %s\n", t.error.c_str());
          continue;
        }
        ttft.push_back(t.ttft);
        dur.push_back(t.duration);
        itl.insert(itl.end(), t.itl.begin(), t.itl.end());
        generated += t.generated;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  const double wall = secs(Clock::now() - t0);
  std::printf(
      "chat: %d clients x %d turns, max %d tokens; %lld errors, %lld retried after the server's hint; %.1f s; "
      "%.1f generated tokens/s\n",
      o.clients, o.turns, o.max_tokens, static_cast<long long>(errors), static_cast<long long>(retries), wall,
      double(generated) / wall);
  std::printf("%-22s %6s %9s %9s %9s %9s\n", "seconds", "n", "p50", "p90", "p99", "max");
  print_row("time to first token", ttft);
  print_row("inter-token latency", itl);
  print_row("turn duration", dur);
  if (!o.json.empty()) {
    std::ofstream j(o.json);
    j << "{\"scenario\":\"chat\",\"clients\":" << o.clients << ",\"turns\":" << o.turns << ",\"errors\":" << errors
      << ",\"ttft_p50\":" << percentile(ttft, 50) << ",\"ttft_p99\":" << percentile(ttft, 99)
      << ",\"itl_p50\":" << percentile(itl, 50) << ",\"itl_p99\":" << percentile(itl, 99)
      << ",\"tokens_per_s\":" << double(generated) / wall << "}\n";
  }
  return errors == 0 ? 0 : 1;
}

int history(const Options& o, v1::Inference::Stub& stub) {
  std::ifstream in(o.text, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "edgeinf-loadtest: cannot read '%s' (scripts/eval-data writes it)\n", o.text.c_str());
    return 1;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string corpus = ss.str();
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
    auto ctx = context(o);
    v1::IngestResponse resp;
    const auto t_in = Clock::now();
    auto w = stub.Ingest(ctx.get(), &resp);
    for (size_t off = 0; off < doc.size(); off += 1 << 20) {
      v1::IngestRequest r;
      if (off == 0) r.set_session(session);
      r.set_text(doc.substr(off, 1 << 20));
      if (!w->Write(r)) break;
    }
    w->WritesDone();
    const grpc::Status st = w->Finish();
    if (!st.ok()) {
      std::fprintf(stderr, "edgeinf-loadtest: Ingest: %s\n", st.error_message().c_str());
      return 1;
    }
    const int64_t len = resp.ingested_tokens();
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

// The value of one unlabelled sample on a Prometheus endpoint (plain HTTP/1.0), or -1.
double scrape(const std::string& addr, const std::string& metric) {
  const size_t colon = addr.rfind(':');
  if (colon == std::string::npos) return -1;
  addrinfo hints{}, *res = nullptr;
  hints.ai_socktype = SOCK_STREAM;
  if (getaddrinfo(addr.substr(0, colon).c_str(), addr.substr(colon + 1).c_str(), &hints, &res) != 0) return -1;
  const int fd = socket(res->ai_family, res->ai_socktype, res->ai_protocol);
  double value = -1;
  if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) == 0) {
    const std::string req = "GET /metrics HTTP/1.0\r\nHost: " + addr + "\r\n\r\n";
    if (send(fd, req.data(), req.size(), 0) == ssize_t(req.size())) {
      std::string body;
      char buf[65536];
      for (ssize_t n; (n = recv(fd, buf, sizeof buf, 0)) > 0;) body.append(buf, size_t(n));
      const std::string key = "\n" + metric + " ";
      if (size_t at = body.find(key); at != std::string::npos) {
        const size_t from = at + key.size(), to = body.find('\n', from);
        if (!absl::SimpleAtod(absl::string_view(body).substr(from, to - from), &value)) value = -1;
      }
    }
  }
  if (fd >= 0) close(fd);
  freeaddrinfo(res);
  return value;
}

// Open-loop arrivals (see the file's comment).
int open_loop(const Options& o, v1::Inference::Stub& stub) {
  // The mix: kind=weight pairs.
  std::vector<std::pair<std::string, double>> mix;
  double total_weight = 0;
  for (absl::string_view part : absl::StrSplit(o.mix, ',', absl::SkipEmpty())) {
    std::vector<std::string> kv = absl::StrSplit(part, '=');
    double w = 0;
    if (kv.size() != 2 || (kv[0] != "chat" && kv[0] != "resume" && kv[0] != "cancel") || !absl::SimpleAtod(kv[1], &w) ||
        w < 0) {
      std::fprintf(stderr, "edgeinf-loadtest: --mix expects chat=W,resume=W,cancel=W, got '%s'\n", o.mix.c_str());
      return 2;
    }
    mix.emplace_back(kv[0], w);
    total_weight += w;
  }
  if (total_weight <= 0) return usage();
  std::vector<std::string> sessions;
  for (int i = 0; i < o.sessions; ++i) sessions.push_back(create_session(stub, o));

  std::mutex mu;
  std::condition_variable all_done;
  std::vector<double> ttft, itl, dur;
  std::map<std::string, int64_t> codes;
  int64_t generated = 0, started = 0, dropped = 0;
  int inflight = 0;
  std::vector<double> rss;
  std::atomic<bool> done{false};
  std::thread sampler([&] {
    while (!o.metrics.empty() && !done) {
      const double v = scrape(o.metrics, "edgeinf_resident_memory_bytes");
      if (v >= 0) {
        std::lock_guard<std::mutex> lock(mu);
        rss.push_back(v);
      }
      std::this_thread::sleep_for(std::chrono::seconds(1));
    }
  });

  std::mt19937_64 rng(o.seed);
  std::exponential_distribution<double> gap(o.rate);
  std::uniform_real_distribution<double> pick(0, total_weight);
  const auto t0 = Clock::now();
  double at = 0;
  for (int64_t i = 0;; ++i) {
    at += gap(rng);
    if (at >= o.duration) break;
    std::this_thread::sleep_until(t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(at)));
    {
      std::lock_guard<std::mutex> lock(mu);
      if (inflight >= o.max_inflight) {  // an open loop never waits: the arrival is counted as dropped
        ++dropped;
        continue;
      }
      ++inflight;
      ++started;
    }
    double r = pick(rng);
    std::string kind = mix.back().first;
    for (const auto& [k, w] : mix) {
      if (r < w) {
        kind = k;
        break;
      }
      r -= w;
    }
    v1::GenerateRequest req;
    auto* m = req.mutable_messages()->add_messages();
    m->set_role("user");
    m->set_content(absl::StrCat("Tell me something about the number ", i, "."));
    req.mutable_sampling()->set_seed(uint64_t(i));
    req.mutable_stop()->set_max_tokens(o.max_tokens);
    if (kind == "resume" && !sessions.empty()) req.set_session(sessions[size_t(i) % sessions.size()]);
    // Detached: thousands of requests may start; the last thing each does, under the lock, is to
    // count itself out, and this function waits for the count to reach zero.
    std::thread([&, req, cancel = kind == "cancel"] {
      const TurnTiming t = timed_turn(stub, o, req, cancel);
      std::lock_guard<std::mutex> lock(mu);
      ++codes[code_name(t.code)];
      if (t.ok) {
        ttft.push_back(t.ttft);
        dur.push_back(t.duration);
        itl.insert(itl.end(), t.itl.begin(), t.itl.end());
        generated += t.generated;
      }
      if (--inflight == 0) all_done.notify_all();
    }).detach();
  }
  {
    std::unique_lock<std::mutex> lock(mu);
    all_done.wait(lock, [&] { return inflight == 0; });
  }
  const double wall = secs(Clock::now() - t0);
  done = true;
  sampler.join();
  int64_t unexpected = 0;
  std::string code_list;
  for (const auto& [code, n] : codes) {
    // Cancelled turns are the cancel share of the mix; a resumed session busy with another turn
    // answers ABORTED by design. Everything else but OK is unexpected.
    if (code != "OK" && code != "CANCELLED" && code != "ABORTED") unexpected += n;
    code_list += absl::StrCat(code_list.empty() ? "" : ", ", code, " ", n);
  }
  std::printf(
      "open: %.2f/s for %.0f s (mix %s): %lld started (%.2f/s), %lld dropped at %d in flight; %.1f s; "
      "%.1f generated tokens/s\ncodes: %s\n",
      o.rate, o.duration, o.mix.c_str(), static_cast<long long>(started), double(started) / o.duration,
      static_cast<long long>(dropped), o.max_inflight, wall, double(generated) / wall, code_list.c_str());
  std::printf("%-22s %6s %9s %9s %9s %9s\n", "seconds", "n", "p50", "p90", "p99", "max");
  print_row("time to first token", ttft);
  print_row("inter-token latency", itl);
  print_row("turn duration", dur);
  if (!rss.empty()) {
    std::printf("server resident memory: first %.0f MiB, min %.0f, max %.0f, last %.0f (%zu samples)\n",
                rss.front() / 1048576, *std::min_element(rss.begin(), rss.end()) / 1048576,
                *std::max_element(rss.begin(), rss.end()) / 1048576, rss.back() / 1048576, rss.size());
  }
  if (!o.json.empty()) {
    std::ofstream j(o.json);
    j << "{\"scenario\":\"open\",\"rate\":" << o.rate << ",\"duration_s\":" << o.duration << ",\"started\":" << started
      << ",\"dropped\":" << dropped << ",\"achieved_rate\":" << double(started) / o.duration
      << ",\"tokens_per_s\":" << double(generated) / wall << ",\"unexpected_errors\":" << unexpected
      << ",\"ttft_p50\":" << percentile(ttft, 50) << ",\"ttft_p90\":" << percentile(ttft, 90)
      << ",\"ttft_p99\":" << percentile(ttft, 99) << ",\"itl_p50\":" << percentile(itl, 50)
      << ",\"itl_p99\":" << percentile(itl, 99) << ",\"duration_p50\":" << percentile(dur, 50)
      << ",\"duration_p99\":" << percentile(dur, 99);
    if (!rss.empty()) {
      j << ",\"rss_min\":" << *std::min_element(rss.begin(), rss.end())
        << ",\"rss_max\":" << *std::max_element(rss.begin(), rss.end()) << ",\"rss_last\":" << rss.back();
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
      "usage: edgeinf-loadtest [--server ADDR] [--token T] [--json FILE] SCENARIO [options]\n"
      "  chat    [--clients N] [--turns K] [--max-tokens M] [--history-bytes B --text FILE]\n"
      "  history [--tokens 32768,131072] [--text FILE] [--max-tokens M]\n"
      "  open    --rate R --duration S [--mix chat=6,resume=3,cancel=1] [--sessions N] [--max-tokens M]\n"
      "          [--max-inflight K] [--metrics HOST:PORT] [--seed N]\n"
      "  compare A.json B.json\n",
      stderr);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--server") {
      o.server = value();
    } else if (a == "--token") {
      o.token = value();
    } else if (a == "--json") {
      o.json = value();
    } else if (a == "--clients") {
      if (!absl::SimpleAtoi(value(), &o.clients) || o.clients <= 0) return usage();
    } else if (a == "--turns") {
      if (!absl::SimpleAtoi(value(), &o.turns) || o.turns <= 0) return usage();
    } else if (a == "--max-tokens") {
      if (!absl::SimpleAtoi(value(), &o.max_tokens) || o.max_tokens <= 0) return usage();
    } else if (a == "--history-bytes") {
      if (!absl::SimpleAtoi(value(), &o.history_bytes) || o.history_bytes < 0) return usage();
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
      if (!absl::SimpleAtod(value(), &o.rate) || !(o.rate > 0)) return usage();
    } else if (a == "--duration") {
      if (!absl::SimpleAtod(value(), &o.duration) || !(o.duration > 0)) return usage();
    } else if (a == "--mix") {
      o.mix = value();
    } else if (a == "--sessions") {
      if (!absl::SimpleAtoi(value(), &o.sessions) || o.sessions < 0) return usage();
    } else if (a == "--max-inflight") {
      if (!absl::SimpleAtoi(value(), &o.max_inflight) || o.max_inflight <= 0) return usage();
    } else if (a == "--metrics") {
      o.metrics = value();
    } else if (a == "--seed") {
      if (!absl::SimpleAtoi(value(), &o.seed)) return usage();
    } else if (o.scenario.empty() && a[0] != '-') {
      o.scenario = a;
    } else if (o.scenario == "compare" && a[0] != '-') {
      o.files.push_back(a);
    } else {
      return usage();
    }
  }
  if (o.scenario == "compare") return compare(o);
  grpc::ChannelArguments args;
  args.SetMaxSendMessageSize(-1);
  auto channel = grpc::CreateCustomChannel(o.server, grpc::InsecureChannelCredentials(), args);
  auto stub = v1::Inference::NewStub(channel);
  if (o.scenario == "chat") return chat(o, *stub);
  if (o.scenario == "history") return history(o, *stub);
  if (o.scenario == "open") return open_loop(o, *stub);
  return usage();
}
