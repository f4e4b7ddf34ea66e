// Requests at the edges: bytes that are not a valid message, names too long to echo, usage that
// must add up, out-of-range shapes and parameters, a character cut by max_tokens; and the process
// at its edges: --help, TLS mistakes, a failed start, the drain after SIGTERM, memory per session.
#include "tests/integration/harness.h"

namespace edgeinf {
namespace {

using namespace edgeinf::testing;  // NOLINT: the harness is this file's vocabulary

// A length-delimited field with raw bytes (what a string field would hold if it were not UTF-8).
std::string field(int number, const std::string& bytes) {
  std::string out;
  out.push_back(char(number << 3 | 2));
  out.push_back(char(bytes.size()));
  return out + bytes;
}

TEST(Requests, UnparsableRequestsAreInvalidArgumentSayingWhy) {
  auto s = Server::start(temp_store());
  const std::string not_utf8 = "caf\xc3";  // a string field ending inside a character
  struct Case {
    const char* method;
    std::string bytes;
    const char* type;
  };
  const Case cases[] = {
      {"Generate", field(2, not_utf8), "edgeinfinite.v1.GenerateRequest"},
      {"GetSession", field(1, "sessions/\xff\xfe"), "edgeinfinite.v1.GetSessionRequest"},
      {"Tokenize", field(1, not_utf8), "edgeinfinite.v1.TokenizeRequest"},
      {"CreateSession", std::string("\x0a\x05\x0a\x03\xff\xff\xff", 7), "edgeinfinite.v1.CreateSessionRequest"},
      {"Generate", std::string("\x0a\xff\xff\xff\xff\x0f", 6), "edgeinfinite.v1.GenerateRequest"},  // malformed
  };
  for (const Case& c : cases) {
    const RawResult r = raw_call(s->channel, std::string("/edgeinfinite.v1.Inference/") + c.method, {c.bytes});
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << c.method << ": " << r.status.error_message();
    EXPECT_NE(r.status.error_message().find(c.type), std::string::npos) << r.status.error_message();
  }
  const RawResult r = raw_call(s->channel, "/edgeinfinite.v1.Inference/Generate", {field(2, not_utf8)});
  EXPECT_NE(r.status.error_message().find("UTF-8"), std::string::npos) << r.status.error_message();
  // The server is fine, and counts them.
  EXPECT_TRUE(generate(*s->stub, text_request("", "hi", 2, 1)).status.ok());
  EXPECT_GE(metric(scrape(*s), "edgeinf_requests_total{code=\"INVALID_ARGUMENT\",method=\"Generate\"}"), 2);
}

TEST(Requests, LongNamesAreNotEchoedInFull) {
  auto s = Server::start(temp_store());
  for (const std::string& name : {"sessions/" + std::string(100000, 'x'), std::string(100000, 'y')}) {
    v1::Session info;
    const grpc::Status st = get_session(*s->stub, name, &info);
    EXPECT_TRUE(st.error_code() == grpc::StatusCode::NOT_FOUND || st.error_code() == grpc::StatusCode::INVALID_ARGUMENT)
        << st.error_code() << " " << st.error_message().size();
    EXPECT_LT(st.error_message().size(), 300u);
    const Turn t = generate(*s->stub, text_request(name, "hi", 2, 1));
    EXPECT_LT(t.status.error_message().size(), 300u);
    EXPECT_NE(t.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  }
}

TEST(Requests, UsageAddsUpTurnAfterTurn) {
  auto s = Server::start(temp_store());
  const std::string a = create_session(*s->stub);
  int64_t session_tokens = 0;
  auto check = [&](const Turn& t, const char* what) {
    ASSERT_TRUE(t.status.ok()) << what << ": " << t.status.error_message();
    const v1::Usage& u = t.final.usage();
    EXPECT_EQ(u.cached_tokens(), session_tokens) << what;
    EXPECT_EQ(t.final.session_tokens(), u.cached_tokens() + u.prompt_tokens() + u.generated_tokens()) << what;
    session_tokens = t.final.session_tokens();
    v1::Session info;
    ASSERT_TRUE(get_session(*s->stub, a, &info).ok());
    EXPECT_EQ(info.total_tokens(), session_tokens) << what;
  };
  // A chat turn ending on the end-of-turn token, a text turn cut by max_tokens, a stop string, a
  // token-id turn, and an Ingest.
  v1::GenerateRequest chat;
  chat.set_session(a);
  auto* m = chat.mutable_messages()->add_messages();
  m->set_role("user");
  m->set_content("What is the capital of France?");
  chat.mutable_sampling()->set_temperature(0);
  chat.mutable_stop()->set_max_tokens(40);
  const Turn t1 = generate(*s->stub, chat);
  EXPECT_EQ(t1.final.finish_reason(), v1::FINISH_REASON_STOP);
  check(t1, "chat");
  m->set_content("And of Spain?");
  check(generate(*s->stub, chat), "second chat");
  check(generate(*s->stub, text_request(a, " Once upon a time", 5, 1)), "text");
  v1::GenerateRequest stop = text_request(a, " One, two, three,", 30, 2);
  stop.mutable_stop()->add_stop(",");
  stop.mutable_stop()->set_ignore_eos(true);
  check(generate(*s->stub, stop), "stop string");
  v1::GenerateRequest ids;
  ids.set_session(a);
  ids.mutable_token_ids()->add_ids(504);
  ids.mutable_token_ids()->add_ids(1535);
  ids.mutable_stop()->set_max_tokens(3);
  check(generate(*s->stub, ids), "token ids");
  v1::IngestResponse ingested;
  ASSERT_TRUE(ingest(*s->stub, a, {kStory}, &ingested).ok());
  EXPECT_EQ(ingested.session().total_tokens(), session_tokens + ingested.ingested_tokens());
}

TEST(Requests, OutOfRangeShapesAndParametersAreRefused) {
  auto s = Server::start(temp_store());
  auto create = [&](const char* policy, int budget, int context) {
    v1::PolicyConfig p;
    p.set_name(policy);
    p.set_budget(budget);
    p.set_context(context);
    grpc::Status st;
    create_session(*s->stub, "", &st, p);
    return st;
  };
  EXPECT_EQ(create("full", 0, 2147483647).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(create("full", 0, 8193).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(create("full", 0, 4096).ok());
  EXPECT_EQ(create("snapkv", 2147483647, 0).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(create("snapkv", 256, 0).ok());
  v1::GenerateRequest r = text_request("", "hi", 2, 1);
  r.mutable_sampling()->set_min_p(1.0f);
  const Turn t = generate(*s->stub, r);
  EXPECT_EQ(t.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(t.status.error_message().find("min_p"), std::string::npos) << t.status.error_message();
  for (const char* token : {"garbage", "sessions/x", "0123456789abcdef"}) {
    grpc::ClientContext ctx;
    v1::ListSessionsRequest req;
    req.set_page_token(token);
    v1::ListSessionsResponse resp;
    EXPECT_EQ(s->stub->ListSessions(&ctx, req, &resp).error_code(), grpc::StatusCode::INVALID_ARGUMENT) << token;
  }
}

bool valid_utf8_without_replacement(const std::string& s) {
  // No U+FFFD (EF BF BD), and every lead byte followed by its continuation bytes.
  if (s.find("\xef\xbf\xbd") != std::string::npos) return false;
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    const size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    }
    i += n;
  }
  return true;
}

TEST(Requests, MaxTokensInsideACharacterHoldsItsBytesBack) {
  auto s = Server::start(temp_store());
  // Greedy: the answer is a run of emoji and CJK characters, several byte-level tokens each.
  v1::GenerateRequest r;
  r.set_text(
      "Emoji list: 😀😃😄😁😆😅😂🤣😊😇🙂🙃😉😌😍🥰😘😗😙😚😋😛😝😜🤪🤨🧐🤓😎🥸🤩🥳😏😒😞😔😟😕🙁☹️😣😖😫😩🥺😢");
  r.mutable_sampling()->set_temperature(0);
  r.mutable_stop()->set_ignore_eos(true);
  r.mutable_stop()->set_max_tokens(40);
  const Turn full = generate(*s->stub, r);
  ASSERT_TRUE(full.status.ok()) << full.status.error_message();
  int cut_inside = 0;
  for (int n = 1; n <= 16; ++n) {
    r.mutable_stop()->set_max_tokens(n);
    const Turn t = generate(*s->stub, r);
    ASSERT_TRUE(t.status.ok());
    EXPECT_TRUE(valid_utf8_without_replacement(t.text)) << "max_tokens " << n;
    const std::string& held = t.final.incomplete_bytes();
    EXPECT_LT(held.size(), 4u);
    // Text and held bytes are exactly what the longer run produced so far.
    EXPECT_EQ(full.text.compare(0, t.text.size() + held.size(), t.text + held), 0) << "max_tokens " << n;
    cut_inside += !held.empty();
  }
  EXPECT_GT(cut_inside, 0) << "no max_tokens in 1..16 ended inside a character: the test shows nothing";
}

int run(const std::string& cmd, std::string* out) {
  const std::string file = temp_path("cmd") + ".txt";
  const int rc = std::system((cmd + " > " + file + " 2>&1").c_str());
  *out = read_all(file);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

TEST(Requests, HelpAndBadUsageAreClear) {
  std::string out;
  run(std::string(EDGEINF_SERVER_BIN) + " --help", &out);
  EXPECT_EQ(out.find("No flags matched"), std::string::npos) << out;
  for (const char* flag : {"--store_timeout_ms", "--memory_budget_mb", "--auth_tokens", "authorization: Bearer"}) {
    EXPECT_NE(out.find(flag), std::string::npos) << flag << " missing from --help:\n" << out;
  }
  EXPECT_EQ(run(std::string(EDGEINF_CLIENT_BIN), &out), 2);
  EXPECT_NE(out.find("usage:"), std::string::npos) << out;
}

TEST(Requests, TlsMistakesAreExplained) {
  const std::string dir = temp_path("tls");
  fs::create_directories(dir);
  std::string out;
  for (const char* who : {"a", "b"}) {
    const std::string cmd = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost -keyout " + dir +
                            "/" + who + ".key -out " + dir + "/" + who + ".crt";
    ASSERT_EQ(run(cmd, &out), 0) << out;
  }
  struct Case {
    std::vector<std::string> flags;
    const char* says;
  };
  const Case cases[] = {
      {{"--tls_cert=" + dir + "/a.crt"}, "--tls_cert and --tls_key go together"},
      {{"--tls_cert=" + dir + "/a.key", "--tls_key=" + dir + "/a.crt"}, "swapped"},
      {{"--tls_cert=" + dir + "/a.crt", "--tls_key=" + dir + "/b.key"}, "does not match the certificate"},
      {{"--tls_cert=" + dir + "/missing.crt", "--tls_key=" + dir + "/a.key"}, "cannot read --tls_cert"},
  };
  for (const Case& c : cases) {
    auto s = Server::start(temp_store(), c.flags, /*expect_serving=*/false);
    ASSERT_TRUE(s->proc->wait_exit(60));
    EXPECT_NE(WEXITSTATUS(s->proc->exit_status()), 0);
    EXPECT_NE(s->proc->log().find(c.says), std::string::npos) << s->proc->log();
  }
  // A good pair serves TLS.
  auto s = Server::start(temp_store(), {"--tls_cert=" + dir + "/a.crt", "--tls_key=" + dir + "/a.key"});
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = read_all(dir + "/a.crt");
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride("localhost");
  auto channel = grpc::CreateCustomChannel(s->address(), grpc::SslCredentials(ssl), args);
  EXPECT_EQ(health_status(channel, "edgeinfinite.v1.Inference"), "SERVING");
}

TEST(Requests, AFailedStartCreatesNoStoreDirectory) {
  const std::string dir = temp_path("never");
  fs::remove_all(dir);
  auto s = Server::start("dir://" + dir, {"--model=/nonexistent.gguf"}, /*expect_serving=*/false);
  ASSERT_TRUE(s->proc->wait_exit(60));
  EXPECT_NE(WEXITSTATUS(s->proc->exit_status()), 0);
  EXPECT_NE(s->proc->log().find("/nonexistent.gguf"), std::string::npos) << s->proc->log();
  EXPECT_FALSE(fs::exists(dir));
  // A relative store path is spelt out in full in the log.
  const std::string rel = temp_path("rel");
  fs::create_directories(rel);
  const std::string cmd = "cd " + rel + " && " + std::string(EDGEINF_SERVER_BIN) +
                          " --store=dir://here --model=/nonexistent.gguf --metrics_listen= --listen=127.0.0.1:" +
                          std::to_string(free_port());
  std::string out;
  EXPECT_NE(run(cmd, &out), 0);
  EXPECT_FALSE(fs::exists(rel + "/here")) << out;
}

TEST(Requests, HealthAnswersNotServingDuringTheDrain) {
  // The grace is far beyond the turn's time (22 s under ASan alone; over 60 s on a loaded machine).
  auto s = Server::start(temp_store(), {"--shutdown_grace_s=300"});
  v1::GenerateRequest long_req = text_request("", kStory, 200, 1);
  long_req.mutable_stop()->set_ignore_eos(true);
  Turn long_turn;
  std::atomic<bool> started{false};
  std::thread runner([&] {
    grpc::ClientContext ctx;
    auto reader = s->stub->Generate(&ctx, long_req);
    v1::GenerateEvent ev;
    while (reader->Read(&ev)) {
      if (ev.has_delta()) started = true;
      if (ev.has_final()) long_turn.has_final = true;
    }
    long_turn.status = reader->Finish();
  });
  while (!started) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  s->proc->signal(SIGTERM);
  ASSERT_TRUE(s->proc->wait_for_log("shutting down", 10));
  // Still answering: NOT_SERVING, and new calls are refused with a retry hint.
  grpc::Status call;
  EXPECT_EQ(health_status(s->channel, "", &call), "NOT_SERVING") << call.error_message();
  EXPECT_EQ(health_status(s->channel, "edgeinfinite.v1.Inference"), "NOT_SERVING");
  const Turn refused = generate(*s->stub, text_request("", "hi", 2, 1));
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::UNAVAILABLE) << refused.status.error_message();
  EXPECT_TRUE(refused.retry_hint);
  runner.join();
  EXPECT_TRUE(long_turn.status.ok()) << "the turn in flight finishes: " << long_turn.status.error_message();
  EXPECT_TRUE(long_turn.has_final);
  ASSERT_TRUE(s->proc->wait_exit(30));
  EXPECT_TRUE(WIFEXITED(s->proc->exit_status()) && WEXITSTATUS(s->proc->exit_status()) == 0) << s->proc->log();
}

TEST(Requests, SessionsCostWhatTheyHoldAndMemoryIsReported) {
  auto s = Server::start(temp_store(), {"--window=1020", "--segment=512", "--kv_type=f32", "--memory_budget_mb=2048"});
  const std::string a = create_session(*s->stub);
  const Turn t = generate(*s->stub, text_request(a, "Hello there.", 4, 1));
  ASSERT_TRUE(t.status.ok());
  // A short session holds a few tokens of its 1,536-token window: far from its 72 MB bound.
  EXPECT_LT(t.final.usage().state_bytes(), 8 << 20);
  EXPECT_GT(t.final.usage().state_bytes(), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // gauges refresh every 200 ms
  const std::string m = scrape(*s);
  EXPECT_EQ(metric(m, "edgeinf_memory_budget_bytes"), 2048.0 * (1 << 20));
  EXPECT_GT(metric(m, "edgeinf_resident_memory_bytes"), 50e6);
  EXPECT_LT(metric(m, "edgeinf_resident_memory_bytes"), 2048.0 * (1 << 20));
  EXPECT_GT(metric(m, "edgeinf_memory_fixed_bytes"), 0);
}

}  // namespace
}  // namespace edgeinf
