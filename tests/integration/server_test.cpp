// The service end to end: real edgeinf-server processes on 127.0.0.1 with the real model, a
// real gRPC client, a real Redis server (tests/integration/harness.h).
#include "tests/integration/harness.h"

#include "engine/util/sha256.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"

namespace edgeinf {
namespace {

using namespace edgeinf::testing;  // NOLINT: the harness is this file's vocabulary

TEST(Server, HealthStreamingAndUsage) {
  auto s = Server::start(temp_store());
  {
    auto health = grpc::health::v1::Health::NewStub(s->channel);
    grpc::ClientContext ctx;
    grpc::health::v1::HealthCheckRequest req;
    req.set_service("edgeinfinite.v1.Inference");
    grpc::health::v1::HealthCheckResponse resp;
    ASSERT_TRUE(health->Check(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  }
  {
    // Server reflection lists the service, so generic tools can call it.
    auto refl = grpc::reflection::v1alpha::ServerReflection::NewStub(s->channel);
    grpc::ClientContext ctx;
    auto stream = refl->ServerReflectionInfo(&ctx);
    grpc::reflection::v1alpha::ServerReflectionRequest req;
    req.set_list_services("*");
    ASSERT_TRUE(stream->Write(req));
    stream->WritesDone();
    grpc::reflection::v1alpha::ServerReflectionResponse resp;
    std::vector<std::string> names;
    while (stream->Read(&resp)) {
      for (const auto& svc : resp.list_services_response().service()) names.push_back(svc.name());
    }
    ASSERT_TRUE(stream->Finish().ok());
    EXPECT_NE(std::find(names.begin(), names.end(), "edgeinfinite.v1.Inference"), names.end());
    EXPECT_NE(std::find(names.begin(), names.end(), "grpc.health.v1.Health"), names.end());
  }
  v1::GenerateRequest req;
  auto* m = req.mutable_messages()->add_messages();
  m->set_role("user");
  m->set_content("What is the capital of France?");
  req.mutable_sampling()->set_temperature(0.0f);
  req.mutable_stop()->set_max_tokens(24);
  const Turn t = generate(*s->stub, req);
  ASSERT_TRUE(t.status.ok()) << t.status.error_message();
  EXPECT_NE(t.text.find("Paris"), std::string::npos) << t.text;
  EXPECT_GE(t.progress_events, 1);
  ASSERT_TRUE(t.has_final);
  // The end-of-generation token counts as generated (it stays in a session's history) but is
  // not in the deltas.
  EXPECT_EQ(t.final.finish_reason(), v1::FINISH_REASON_STOP);
  EXPECT_EQ(t.final.usage().generated_tokens(), int64_t(t.ids.size()) + 1);
  EXPECT_EQ(t.final.usage().prompt_tokens(), t.progress_total);
  EXPECT_EQ(t.final.usage().cached_tokens(), 0);
  EXPECT_EQ(t.final.session_tokens(), t.final.usage().prompt_tokens() + t.final.usage().generated_tokens());
  EXPECT_GT(t.final.usage().state_bytes(), 0);
}

TEST(Server, ChatTurnsOnASessionAppendOnlyTheNewTurn) {
  auto s = Server::start(temp_store());
  const std::string a = create_session(*s->stub);
  auto chat = [&](const std::string& content) {
    v1::GenerateRequest r;
    r.set_session(a);
    auto* m = r.mutable_messages()->add_messages();
    m->set_role("user");
    m->set_content(content);
    r.mutable_sampling()->set_temperature(0.0f);
    r.mutable_stop()->set_max_tokens(8);
    return generate(*s->stub, r);
  };
  const Turn first = chat("Hello!");
  ASSERT_TRUE(first.status.ok()) << first.status.error_message();
  const Turn second = chat("Tell me more.");
  ASSERT_TRUE(second.status.ok()) << second.status.error_message();
  // The second turn is exactly the new user message and the assistant cue: no second system block.
  grpc::ClientContext ctx;
  v1::TokenizeRequest tr;
  tr.set_text("\n<|im_start|>user\nTell me more.<|im_end|>\n<|im_start|>assistant\n");
  tr.set_parse_special(true);
  v1::TokenizeResponse ids;
  ASSERT_TRUE(s->stub->Tokenize(&ctx, tr, &ids).ok());
  EXPECT_EQ(second.final.usage().prompt_tokens(), ids.ids_size());
  EXPECT_GT(first.final.usage().prompt_tokens(), ids.ids_size() + 10) << "the first turn carries the system block";
}

TEST(Server, ResumedSessionMatchesUninterruptedAndSurvivesRestart) {
  const std::string store = temp_store();
  std::string text_a2, name_b;
  int64_t compressed = 0;
  {
    auto s = Server::start(store);
    // A: two turns on one server.
    const std::string a = create_session(*s->stub);
    const Turn a1 = generate(*s->stub, text_request(a, std::string(kStory) + kStory, 16, 7));
    ASSERT_TRUE(a1.status.ok()) << a1.status.error_message();
    const Turn a2 = generate(*s->stub, text_request(a, " What colour was the door?", 16, 8));
    ASSERT_TRUE(a2.status.ok()) << a2.status.error_message();
    text_a2 = a2.text;
    EXPECT_GT(a2.final.usage().cached_tokens(), 0);
    compressed = a2.final.usage().compressed_tokens();
    EXPECT_GT(compressed, 0) << "the prompts are long enough to fold tokens into memory";
    // B: the same first turn, then the server stops.
    name_b = create_session(*s->stub);
    const Turn b1 = generate(*s->stub, text_request(name_b, std::string(kStory) + kStory, 16, 7));
    ASSERT_TRUE(b1.status.ok());
    EXPECT_EQ(b1.text, a1.text);
  }
  auto s = Server::start(store);
  v1::Session info;
  ASSERT_TRUE(get_session(*s->stub, name_b, &info).ok());
  EXPECT_GT(info.total_tokens(), 0);
  const Turn b2 = generate(*s->stub, text_request(name_b, " What colour was the door?", 16, 8));
  ASSERT_TRUE(b2.status.ok()) << b2.status.error_message();
  EXPECT_EQ(b2.text, text_a2) << "a session resumed from the store continues exactly as an uninterrupted one";
  EXPECT_EQ(b2.final.usage().compressed_tokens(), compressed);
}

// Sessions choose how their exact KV entries are stored; f16 and q8 states are smaller, go to
// the store with their type and continue after a restart exactly as an uninterrupted twin does.
// The default is the type the gate was trained with (f16 for the bundled gate), else the
// server's --kv_type; an unknown type is INVALID_ARGUMENT.
TEST(Server, SessionsOfEveryKvTypeResumeAcrossARestart) {
  const std::string store = temp_store();
  const std::string first = std::string(kStory) + kStory, second = " What colour was the door?";
  const char* types[] = {"f32", "f16", "q8"};
  std::string twins[3], resumed[3], text_second[3];
  int64_t state[3] = {0, 0, 0};
  {
    auto s = Server::start(store);
    for (int i = 0; i < 3; ++i) {
      v1::PolicyConfig p;
      p.set_kv_type(types[i]);
      twins[i] = create_session(*s->stub, "", nullptr, p);
      resumed[i] = create_session(*s->stub, "", nullptr, p);
      const Turn a1 = generate(*s->stub, text_request(twins[i], first, 16, 7));
      ASSERT_TRUE(a1.status.ok()) << types[i] << ": " << a1.status.error_message();
      const Turn a2 = generate(*s->stub, text_request(twins[i], second, 16, 8));
      ASSERT_TRUE(a2.status.ok()) << types[i] << ": " << a2.status.error_message();
      text_second[i] = a2.text;
      const Turn b1 = generate(*s->stub, text_request(resumed[i], first, 16, 7));
      ASSERT_TRUE(b1.status.ok()) << types[i];
      EXPECT_EQ(b1.text, a1.text) << types[i];
      v1::Session info;
      ASSERT_TRUE(get_session(*s->stub, twins[i], &info).ok());
      EXPECT_EQ(info.policy().kv_type(), types[i]);
      state[i] = info.state_bytes();
    }
    EXPECT_LT(state[1], state[0]);
    EXPECT_LT(state[2], state[1]);
    v1::Session by_default;
    ASSERT_TRUE(get_session(*s->stub, create_session(*s->stub), &by_default).ok());
    EXPECT_EQ(by_default.policy().kv_type(), "f16") << "the bundled gate was trained with f16 entries";
    grpc::Status st;
    v1::PolicyConfig bad;
    bad.set_kv_type("q4");
    create_session(*s->stub, "", &st, bad);
    EXPECT_EQ(st.error_code(), grpc::INVALID_ARGUMENT) << st.error_message();
    EXPECT_NE(st.error_message().find("f32, f16, q8"), std::string::npos) << st.error_message();
  }
  auto s = Server::start(store, {"--kv_type=q8"});
  for (int i = 0; i < 3; ++i) {
    v1::Session info;
    ASSERT_TRUE(get_session(*s->stub, resumed[i], &info).ok());
    EXPECT_EQ(info.policy().kv_type(), types[i]) << "the type comes back with the session";
    const Turn b2 = generate(*s->stub, text_request(resumed[i], second, 16, 8));
    ASSERT_TRUE(b2.status.ok()) << types[i] << ": " << b2.status.error_message();
    EXPECT_EQ(b2.text, text_second[i]) << types[i] << ": resumed from the store, it continues as its twin did";
  }
  v1::Session info;
  ASSERT_TRUE(get_session(*s->stub, create_session(*s->stub), &info).ok());
  EXPECT_EQ(info.policy().kv_type(), "q8") << "--kv_type sets the default";
}

TEST(Server, CancelAndDeadlineLeaveTheSessionAsItWas) {
  auto s = Server::start(temp_store());
  const std::string a = create_session(*s->stub);
  ASSERT_TRUE(generate(*s->stub, text_request(a, kStory, 4, 1)).status.ok());
  v1::Session before;
  ASSERT_TRUE(get_session(*s->stub, a, &before).ok());

  v1::GenerateRequest long_req = text_request(a, " And then", 500, 2);
  long_req.mutable_stop()->set_ignore_eos(true);
  const Turn cancelled = generate(*s->stub, long_req, "", /*cancel_after_deltas=*/3);
  EXPECT_EQ(cancelled.status.error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_FALSE(cancelled.has_final);

  const Turn expired = generate(*s->stub, long_req, "", -1, /*deadline_ms=*/1500);
  EXPECT_EQ(expired.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);

  v1::Session after;
  ASSERT_TRUE(get_session(*s->stub, a, &after).ok());
  EXPECT_EQ(after.total_tokens(), before.total_tokens());
  EXPECT_EQ(after.etag(), before.etag());
  // And the session still works.
  const Turn next = generate(*s->stub, text_request(a, " The end.", 4, 3));
  EXPECT_TRUE(next.status.ok()) << next.status.error_message();
  EXPECT_EQ(next.final.usage().cached_tokens(), before.total_tokens());
}

TEST(Server, MalformedRequestsGetTheRightCodes) {
  auto s = Server::start(temp_store());
  auto code = [&](const v1::GenerateRequest& r) { return generate(*s->stub, r).status.error_code(); };
  v1::GenerateRequest none;
  EXPECT_EQ(code(none), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(code(text_request("bogus", "hi", 4, 1)), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(code(text_request("sessions/0123456789abcdef0123456789abcdef", "hi", 4, 1)), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(code(text_request("", "hi", 100000, 1)), grpc::StatusCode::INVALID_ARGUMENT);
  v1::GenerateRequest bad_temp = text_request("", "hi", 4, 1);
  bad_temp.mutable_sampling()->set_temperature(-1);
  EXPECT_EQ(code(bad_temp), grpc::StatusCode::INVALID_ARGUMENT);
  v1::GenerateRequest bad_ids;
  bad_ids.mutable_token_ids()->add_ids(1 << 30);
  EXPECT_EQ(code(bad_ids), grpc::StatusCode::INVALID_ARGUMENT);
  v1::GenerateRequest bad_role;
  bad_role.mutable_messages()->add_messages()->set_role("wizard");
  EXPECT_EQ(code(bad_role), grpc::StatusCode::INVALID_ARGUMENT);
  // A stale etag is ABORTED.
  const std::string a = create_session(*s->stub);
  v1::GenerateRequest stale = text_request(a, "hi", 2, 1);
  stale.set_etag("ffff");
  EXPECT_EQ(code(stale), grpc::StatusCode::ABORTED);
  // Garbage instead of a snapshot.
  {
    grpc::ClientContext ctx;
    v1::Session out;
    auto w = s->stub->ImportSession(&ctx, &out);
    v1::SnapshotChunk c;
    c.set_data("definitely not a snapshot");
    w->Write(c);
    w->WritesDone();
    EXPECT_EQ(w->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  // The server is still up.
  EXPECT_TRUE(generate(*s->stub, text_request("", "hi", 2, 1)).status.ok());
}

TEST(Server, ConcurrentStreamsAreBatchedAndStayDeterministic) {
  auto s = Server::start(temp_store());
  std::vector<v1::GenerateRequest> reqs;
  for (uint64_t seed : {11, 12, 13}) {
    v1::GenerateRequest r = text_request("", std::string("Chapter ") + std::to_string(seed) + ". " + kStory, 24, seed);
    r.mutable_stop()->set_ignore_eos(true);
    reqs.push_back(r);
  }
  std::vector<std::string> alone;
  for (const auto& r : reqs) {
    const Turn t = generate(*s->stub, r);
    ASSERT_TRUE(t.status.ok()) << t.status.error_message();
    alone.push_back(t.text);
  }
  // The same requests at once, beside a long prefill: decode steps share forward passes, and each
  // stream still gets exactly the tokens it gets alone.
  std::vector<Turn> together(reqs.size());
  std::vector<std::thread> threads;
  std::string long_doc;
  for (int i = 0; i < 8; ++i) long_doc += kStory;
  std::thread long_one([&] { generate(*s->stub, text_request("", long_doc, 1, 1)); });
  for (size_t i = 0; i < reqs.size(); ++i) threads.emplace_back([&, i] { together[i] = generate(*s->stub, reqs[i]); });
  for (std::thread& t : threads) t.join();
  long_one.join();
  for (size_t i = 0; i < reqs.size(); ++i) {
    ASSERT_TRUE(together[i].status.ok()) << together[i].status.error_message();
    EXPECT_EQ(together[i].text, alone[i]) << "stream " << i;
  }
  // They did run together: every stream had its first token before any of them ended.
  auto last_first = together[0].first_delta;
  auto first_end = together[0].ended;
  for (const Turn& t : together) {
    last_first = std::max(last_first, t.first_delta);
    first_end = std::min(first_end, t.ended);
  }
  EXPECT_LT(last_first, first_end) << "the streams were served one after another";
}

TEST(Server, ClientSummarizesChatsAndManagesSessions) {
  auto s = Server::start(temp_store());
  const std::string addr = "127.0.0.1:" + std::to_string(s->port);
  const std::string dir = ::testing::TempDir();
  auto run = [&](std::vector<std::string> args, const std::string& name, const std::string& stdin_text = "") {
    const std::string out = dir + "/client-" + name + ".txt", in = dir + "/client-" + name + ".in";
    std::ofstream(in) << stdin_text;
    std::string cmd = std::string(EDGEINF_CLIENT_BIN) + " --server " + addr;
    for (const std::string& a : args) cmd += " '" + a + "'";
    cmd += " < " + in + " > " + out + " 2>&1";
    const int rc = std::system(cmd.c_str());
    return std::make_pair(rc, read_all(out));
  };
  // summarize: upload (Ingest) then a streamed summary in the same session.
  const auto [rc1, sum] =
      run({"summarize", std::string(EDGEINF_SOURCE_DIR) + "/tests/reference/tokenizer_corpus.txt"}, "sum");
  EXPECT_EQ(rc1, 0) << sum;
  EXPECT_NE(sum.find("ingested"), std::string::npos) << sum;
  EXPECT_NE(sum.find("[finish FINISH_REASON_"), std::string::npos) << sum;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(sum, m, std::regex("session (sessions/[0-9a-f]{32})"))) << sum;
  const std::string name = m[1].str();
  // chat: two user lines on that session, then EOF.
  const auto [rc2, chat] = run({"chat", "--session", name}, "chat", "Hello!\nWhat was the document about?\n");
  EXPECT_EQ(rc2, 0) << chat;
  size_t finals = 0;
  for (size_t at = chat.find("[finish"); at != std::string::npos; at = chat.find("[finish", at + 1)) ++finals;
  EXPECT_EQ(finals, 2u) << "two turns, two usage lines:\n" << chat;
  // sessions: list, export, delete; then the session is gone.
  const auto [rc3, list] = run({"sessions", "list"}, "list");
  EXPECT_EQ(rc3, 0);
  EXPECT_NE(list.find(name), std::string::npos) << list;
  const auto [rc4, exp] = run({"sessions", "export", name, dir + "/exported.snap"}, "export");
  EXPECT_EQ(rc4, 0) << exp;
  EXPECT_GT(fs::file_size(dir + "/exported.snap"), 1000u);
  const auto [rc5, del] = run({"sessions", "delete", name}, "delete");
  EXPECT_EQ(rc5, 0) << del;
  const auto [rc6, get] = run({"sessions", "get", name}, "get");
  EXPECT_NE(rc6, 0);
  EXPECT_NE(get.find("NOT_FOUND"), std::string::npos) << get;
}

TEST(Server, IdleSessionsBeyondTheHotBudgetReloadFromTheStore) {
  // One session's state (S=4, W=60, L=32, f32 entries) is ~6 MiB: an 8 MiB budget keeps one in memory.
  auto s = Server::start(temp_store(), {"--hot_mb=8", "--kv_type=f32"});
  const std::string a = create_session(*s->stub), b = create_session(*s->stub);
  const Turn a1 = generate(*s->stub, text_request(a, kStory, 4, 1));
  const Turn b1 = generate(*s->stub, text_request(b, kStory, 4, 1));
  const Turn a2 = generate(*s->stub, text_request(a, " Then", 4, 2));  // a was evicted: read back
  ASSERT_TRUE(a1.status.ok() && b1.status.ok() && a2.status.ok()) << a2.status.error_message();
  EXPECT_EQ(a2.final.usage().cached_tokens(), a1.final.session_tokens());
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // gauges refresh every 200 ms
  const std::string metrics = scrape(*s);
  EXPECT_NE(metrics.find("edgeinf_active_sessions 1"), std::string::npos) << metrics;
}

TEST(Server, TenantsSeeOnlyTheirSessions) {
  const std::string tokens = ::testing::TempDir() + "/tokens-" + std::to_string(::getpid());
  {
    std::ofstream f(tokens);
    f << "# sha256(token) tenant\n"
      << sha256_hex("alpha-secret") << " alpha\n"
      << sha256_hex("beta-secret") << " beta\n";
  }
  auto s = Server::start(temp_store(), {"--auth_tokens=" + tokens});
  const std::string a = create_session(*s->stub, "alpha-secret");
  v1::Session info;
  EXPECT_TRUE(get_session(*s->stub, a, &info, "alpha-secret").ok());
  EXPECT_EQ(get_session(*s->stub, a, &info, "beta-secret").error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(get_session(*s->stub, a, &info).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(get_session(*s->stub, a, &info, "wrong").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(generate(*s->stub, text_request(a, "hi", 2, 1), "beta-secret").status.error_code(),
            grpc::StatusCode::NOT_FOUND);
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer beta-secret");
  v1::ListSessionsResponse list;
  ASSERT_TRUE(s->stub->ListSessions(&ctx, v1::ListSessionsRequest(), &list).ok());
  EXPECT_EQ(list.sessions_size(), 0);
}

TEST(Server, TwoServersShareOneRedis) {
  Redis redis;
  const std::string url = redis.url();
  auto s1 = Server::start(url);
  auto s2 = Server::start(url);
  const std::string a = create_session(*s1->stub);
  const std::string story2 = std::string(kStory) + kStory;  // longer than S + W + L: folds
  const Turn t1 = generate(*s1->stub, text_request(a, story2, 8, 1));
  ASSERT_TRUE(t1.status.ok()) << t1.status.error_message();
  const Turn t2 = generate(*s2->stub, text_request(a, " Next,", 8, 2));
  ASSERT_TRUE(t2.status.ok()) << t2.status.error_message();
  EXPECT_EQ(t2.final.usage().cached_tokens(), t1.final.session_tokens());
  // Continued through Redis exactly as one server continues its own session (memory folded and
  // read on the way).
  EXPECT_GT(t2.final.usage().compressed_tokens(), 0);
  const std::string b = create_session(*s1->stub);
  const Turn b1 = generate(*s1->stub, text_request(b, story2, 8, 1));
  const Turn b2 = generate(*s1->stub, text_request(b, " Next,", 8, 2));
  ASSERT_TRUE(b1.status.ok() && b2.status.ok());
  EXPECT_EQ(b1.text, t1.text);
  EXPECT_EQ(b2.text, t2.text) << "the second server continued the session differently";
  // And back on the first server, which must read the newer state from Redis.
  v1::Session info;
  ASSERT_TRUE(get_session(*s1->stub, a, &info).ok());
  EXPECT_EQ(info.total_tokens(), t2.final.session_tokens());
  // A session created without a shape has the server's (--window=60), not the gate's training one.
  EXPECT_EQ(info.policy().window(), 60);
  EXPECT_EQ(info.policy().segment(), 32);
  const Turn t3 = generate(*s1->stub, text_request(a, " Then", 8, 3));
  const Turn b3 = generate(*s1->stub, text_request(b, " Then", 8, 3));
  ASSERT_TRUE(t3.status.ok() && b3.status.ok());
  EXPECT_EQ(t3.text, b3.text);
}

TEST(Server, IngestExportImportAndLimits) {
  auto s = Server::start(temp_store(),
                         {"--max_prompt_tokens=300", "--max_sessions_per_tenant=3", "--max_message_bytes=65536"});
  const std::string a = create_session(*s->stub);
  // A document in several messages, more tokens than one request may carry.
  std::string doc;
  for (int i = 0; i < 6; ++i) doc += kStory;
  v1::IngestResponse ingested;
  {
    grpc::ClientContext ctx;
    auto w = s->stub->Ingest(&ctx, &ingested);
    for (size_t off = 0; off < doc.size(); off += 700) {
      v1::IngestRequest req;
      if (off == 0) req.set_session(a);
      req.set_text(doc.substr(off, 700));
      ASSERT_TRUE(w->Write(req));
    }
    w->WritesDone();
    const grpc::Status st = w->Finish();
    ASSERT_TRUE(st.ok()) << st.error_message();
  }
  EXPECT_GT(ingested.ingested_tokens(), 300);
  EXPECT_EQ(ingested.session().total_tokens(), ingested.ingested_tokens());
  EXPECT_GT(ingested.session().compressed_tokens(), 0);
  // The same document in one Generate request is over the prompt limit.
  EXPECT_EQ(generate(*s->stub, text_request("", doc, 4, 1)).status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // A message over the size limit.
  EXPECT_EQ(generate(*s->stub, text_request("", std::string(70000, 'a'), 4, 1)).status.error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);

  // Export, import (a new session), and both continue identically.
  std::string snapshot;
  ASSERT_TRUE(export_session(*s->stub, a, &snapshot).ok());
  v1::Session imported;
  {
    const grpc::Status st = import_session(*s->stub, snapshot, &imported);
    ASSERT_TRUE(st.ok()) << st.error_message();
  }
  EXPECT_NE(imported.name(), a);
  EXPECT_EQ(imported.total_tokens(), ingested.session().total_tokens());
  const Turn from_a = generate(*s->stub, text_request(a, " The keeper", 12, 5));
  const Turn from_b = generate(*s->stub, text_request(imported.name(), " The keeper", 12, 5));
  ASSERT_TRUE(from_a.status.ok() && from_b.status.ok());
  EXPECT_EQ(from_a.text, from_b.text);
  // A truncated snapshot is refused.
  {
    grpc::ClientContext ctx;
    v1::Session out;
    auto w = s->stub->ImportSession(&ctx, &out);
    for (size_t off = 0; off < snapshot.size() / 2; off += 32768) {
      v1::SnapshotChunk c;
      c.set_data(snapshot.substr(off, std::min<size_t>(32768, snapshot.size() / 2 - off)));
      w->Write(c);
    }
    w->WritesDone();
    EXPECT_EQ(w->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  // Sessions per tenant: a, the import and one more; the fourth is refused.
  create_session(*s->stub);
  grpc::Status st;
  create_session(*s->stub, "", &st);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  {
    // An import is a new session too: refused at the limit.
    grpc::ClientContext ctx;
    v1::Session out;
    auto w = s->stub->ImportSession(&ctx, &out);
    for (size_t off = 0; off < snapshot.size(); off += 32768) {
      v1::SnapshotChunk c;
      c.set_data(snapshot.substr(off, 32768));
      ASSERT_TRUE(w->Write(c));
    }
    w->WritesDone();
    EXPECT_EQ(w->Finish().error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  }
  // Delete frees a slot; a deleted session is gone.
  ASSERT_TRUE(delete_session(*s->stub, a).ok());
  v1::Session gone;
  EXPECT_EQ(get_session(*s->stub, a, &gone).error_code(), grpc::StatusCode::NOT_FOUND);
  create_session(*s->stub, "", &st);
  EXPECT_TRUE(st.ok()) << st.error_message();
}

// The fixed part of the memory budget a server reports at start-up, in MiB.
int64_t fixed_mib(const Server& s) {
  std::smatch m;
  const std::string log = s.proc->log();
  EXPECT_TRUE(std::regex_search(log, m, std::regex("memory budget [0-9]+ MiB: ([0-9]+) MiB"))) << log;
  return m.empty() ? 0 : std::stoll(m[1].str());
}

TEST(Server, MemoryBudgetAdmissionMetricsAndGracefulShutdown) {
  // A budget that cannot hold the model and one session: the server refuses to start, saying so.
  {
    auto s = Server::start(temp_store(), {"--memory_budget_mb=1"}, /*expect_serving=*/false);
    ASSERT_TRUE(s->proc->wait_exit(60));
    EXPECT_NE(WEXITSTATUS(s->proc->exit_status()), 0);
    EXPECT_NE(s->proc->log().find("memory budget of 1 MiB is too small"), std::string::npos) << s->proc->log();
  }
  // A budget with room for one context of the shipped shape (~69 MiB at its bound) but not two.
  const std::vector<std::string> shape = {"--window=1020", "--segment=512", "--kv_type=f32"};
  int64_t fixed = 0;
  {
    auto probe = Server::start(temp_store(), shape);
    fixed = fixed_mib(*probe);
  }
  auto room_for_one = [&](int admission_wait_ms) {
    std::vector<std::string> args = shape;
    args.push_back("--memory_budget_mb=" + std::to_string(fixed + 100));
    args.push_back("--admission_wait_ms=" + std::to_string(admission_wait_ms));
    return Server::start(temp_store(), args);
  };
  // A turn streaming in the background; returns once its first token is out.
  struct Background {
    std::thread runner;
    grpc::Status status;
    std::atomic<bool> started{false};
  };
  auto start_long_turn = [](Server& s, const std::string& session, int max_tokens, Background* bg) {
    v1::GenerateRequest req = text_request(session, kStory, max_tokens, 1);
    req.mutable_stop()->set_ignore_eos(true);
    bg->runner = std::thread([&s, req, bg] {
      grpc::ClientContext ctx;
      auto reader = s.stub->Generate(&ctx, req);
      v1::GenerateEvent ev;
      while (reader->Read(&ev)) {
        if (ev.has_delta()) bg->started = true;
      }
      bg->status = reader->Finish();
      bg->started = true;
    });
    while (!bg->started) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  };
  // Refused at once: while one turn runs, a second gets RESOURCE_EXHAUSTED with a retry hint, for
  // one-off and session turns alike.
  {
    auto s = room_for_one(0);
    const std::string a = create_session(*s->stub), b = create_session(*s->stub);
    Background bg;
    start_long_turn(*s, a, 120, &bg);
    const Turn one_off = generate(*s->stub, text_request("", "hi", 2, 1));
    EXPECT_EQ(one_off.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << one_off.status.error_message();
    EXPECT_TRUE(one_off.retry_hint);
    const Turn other = generate(*s->stub, text_request(b, "hi", 2, 1));
    EXPECT_EQ(other.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << other.status.error_message();
    bg.runner.join();
    ASSERT_TRUE(bg.status.ok()) << bg.status.error_message();
    // Once it has ended, the next turn is admitted.
    EXPECT_TRUE(generate(*s->stub, text_request(b, "hi", 2, 1)).status.ok());
  }
  // With a wait allowed, the second turn waits in line for the first to give its memory back.
  {
    auto s = room_for_one(60000);
    Background bg;
    start_long_turn(*s, "", 60, &bg);
    const Turn queued = generate(*s->stub, text_request("", "hi", 2, 1));
    bg.runner.join();
    EXPECT_TRUE(bg.status.ok()) << bg.status.error_message();
    EXPECT_TRUE(queued.status.ok()) << queued.status.error_message();
    EXPECT_GT(queued.final.usage().time_to_first_token_s(), 0.5) << "it waited for the first turn";
  }
  // A grace period far longer than the turn needs, so that a slow build (sanitizers) still finishes it.
  auto s = Server::start(temp_store(), {"--shutdown_grace_s=600"});
  ASSERT_TRUE(generate(*s->stub, text_request("", kStory, 4, 1)).status.ok());
  // Metrics on their own port, with the names operators alert on.
  const std::string metrics = scrape(*s);
  for (const char* name : {"edgeinf_time_to_first_token_seconds_bucket", "edgeinf_inter_token_latency_seconds_bucket",
                           "edgeinf_request_duration_seconds_bucket", "edgeinf_tokens_total{kind=\"prompt\"}",
                           "edgeinf_requests_total{code=\"OK\",method=\"Generate\"}", "edgeinf_queue_depth",
                           "edgeinf_state_bytes", "edgeinf_active_sessions"}) {
    EXPECT_NE(metrics.find(name), std::string::npos) << name << " missing from\n" << metrics;
  }
  // SIGTERM while a long turn streams: the turn finishes within the grace period, whole, and the
  // process exits 0.
  v1::GenerateRequest req = text_request("", kStory, 150, 1);
  req.mutable_stop()->set_ignore_eos(true);
  Turn in_flight;
  std::atomic<bool> streaming{false}, ended{false};
  std::thread client([&] {
    in_flight = generate(*s->stub, req, "", -1, 0, &streaming);
    ended = true;
  });
  while (!streaming && !ended) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  s->proc->stop();
  client.join();
  EXPECT_TRUE(in_flight.status.ok()) << in_flight.status.error_message();
  EXPECT_TRUE(in_flight.has_final);
  EXPECT_EQ(in_flight.final.usage().generated_tokens(), 150);
  EXPECT_TRUE(WIFEXITED(s->proc->exit_status()) && WEXITSTATUS(s->proc->exit_status()) == 0) << s->proc->log();
  EXPECT_NE(s->proc->log().find("stopped"), std::string::npos) << s->proc->log();
}

}  // namespace
}  // namespace edgeinf
