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
// Results go to stdout as a table and, with --json FILE, as JSON.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <mutex>
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

struct Options {
  std::string server = "127.0.0.1:50051", token, scenario, json, text = "data/kjv-nt.txt";
  int clients = 4, turns = 4, max_tokens = 32;
  int64_t history_bytes = 0;
  std::vector<int64_t> history = {32768, 131072};
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

TurnTiming timed_turn(v1::Inference::Stub& stub, const Options& o, const v1::GenerateRequest& req) {
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

int usage() {
  std::fputs(
      "usage: edgeinf-loadtest [--server ADDR] [--token T] [--json FILE] SCENARIO [options]\n"
      "  chat    [--clients N] [--turns K] [--max-tokens M] [--history-bytes B --text FILE]\n"
      "  history [--tokens 32768,131072] [--text FILE] [--max-tokens M]\n",
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
    } else if (o.scenario.empty() && a[0] != '-') {
      o.scenario = a;
    } else {
      return usage();
    }
  }
  grpc::ChannelArguments args;
  args.SetMaxSendMessageSize(-1);
  auto channel = grpc::CreateCustomChannel(o.server, grpc::InsecureChannelCredentials(), args);
  auto stub = v1::Inference::NewStub(channel);
  if (o.scenario == "chat") return chat(o, *stub);
  if (o.scenario == "history") return history(o, *stub);
  return usage();
}
