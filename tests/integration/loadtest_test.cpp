// edgeinf-loadtest against a real server: open-loop arrivals report every status code, latency
// percentiles and the server's resident memory, exit 0 when nothing unexpected failed, and two
// runs compare side by side; a scenario file runs every kind of request and samples the server.
#include <gtest/gtest.h>

#include <regex>

#include "tests/integration/harness.h"

namespace edgeinf::testing {
namespace {

double json_number(const std::string& json, const std::string& key) {
  std::smatch m;
  if (!std::regex_search(json, m, std::regex("\"" + key + "\":([-0-9.e+]+)"))) return -1;
  return std::stod(m[1]);
}

TEST(Loadtest, OpenLoopArrivalsReportCodesPercentilesAndServerMemory) {
  const int mport = free_port();
  auto s = Server::start(temp_store(), {"--metrics_listen=127.0.0.1:" + std::to_string(mport)});
  const std::string json = temp_path("open") + ".json", json2 = temp_path("open2") + ".json";
  auto run = [&](const std::string& out, const std::string& seed) {
    Process lt(
        {EDGEINF_LOADTEST_BIN, "--server", s->address(), "--json", out, "open", "--rate", "4", "--duration", "4",
         "--max-tokens", "6", "--sessions", "2", "--metrics", "127.0.0.1:" + std::to_string(mport), "--seed", seed},
        temp_path("loadtest") + ".log");
    EXPECT_TRUE(lt.wait_exit(180)) << lt.log();
    EXPECT_EQ(lt.exit_status(), 0) << lt.log();
    return lt.log();
  };
  const std::string log = run(json, "3");
  EXPECT_NE(log.find("time to first token"), std::string::npos) << log;
  EXPECT_NE(log.find("server resident memory"), std::string::npos) << log;
  const std::string j = read_all(json);
  // Poisson arrivals at 4/s for 4 s: 16 expected; far outside [4, 40] the generator is wrong.
  EXPECT_GE(json_number(j, "started"), 4) << j;
  EXPECT_LE(json_number(j, "started"), 40) << j;
  EXPECT_GT(json_number(j, "OK"), 0) << j;
  EXPECT_EQ(json_number(j, "unexpected_errors"), 0) << j;
  EXPECT_GT(json_number(j, "ttft_p50"), 0) << j;
  EXPECT_GE(json_number(j, "ttft_p99"), json_number(j, "ttft_p50")) << j;
  EXPECT_GT(json_number(j, "rss_max"), 50e6) << j;  // the model alone is 92 MB once read
  run(json2, "4");
  Process cmp({EDGEINF_LOADTEST_BIN, "compare", json, json2}, temp_path("compare") + ".log");
  ASSERT_TRUE(cmp.wait_exit(30));
  EXPECT_EQ(cmp.exit_status(), 0) << cmp.log();
  EXPECT_NE(cmp.log().find("ttft_p50"), std::string::npos) << cmp.log();
  EXPECT_NE(cmp.log().find("B vs A"), std::string::npos) << cmp.log();
}

TEST(Loadtest, ScenarioFileRunsEveryKindOfRequestAndSamplesTheServer) {
  const int mport = free_port();
  auto s = Server::start(temp_store(), {"--metrics_listen=127.0.0.1:" + std::to_string(mport)});
  const std::string text = temp_path("prose") + ".txt", scenario = temp_path("scenario") + ".textproto";
  {
    std::ofstream t(text);
    for (int i = 0; i < 20; ++i) t << kStory << "\n";
    std::ofstream f(scenario);
    f << "description: \"every kind\"\n"
         "closed { clients: 2 }\n"
         "max_requests: 8\n"
         "duration_s: 300\n"
         "sessions { count: 2 policies: \"edgeinfinite\" policies: \"streaming\" history_bytes: 1500 }\n"
         "mix { kind: RESUME weight: 2 max_tokens: 6 }\n"
         "mix { kind: SUMMARY weight: 1 max_tokens: 6 document_bytes: 2500 }\n"
         "mix { kind: CANCEL weight: 1 max_tokens: 6 }\n"
         "mix { kind: CHAT weight: 1 max_tokens: 6 }\n"
         "text_file: \""
      << text << "\"\nseed: 5\n";
  }
  const std::string json = temp_path("run") + ".json";
  Process lt({EDGEINF_LOADTEST_BIN, "--server", s->address(), "--json", json, "--metrics",
              "127.0.0.1:" + std::to_string(mport), "run", scenario},
             temp_path("loadtest") + ".log");
  ASSERT_TRUE(lt.wait_exit(300)) << lt.log();
  EXPECT_EQ(lt.exit_status(), 0) << lt.log();
  const std::string j = read_all(json);
  EXPECT_EQ(json_number(j, "started"), 8) << j;
  EXPECT_EQ(json_number(j, "unexpected_errors"), 0) << j;
  EXPECT_GT(json_number(j, "ttft_p50"), 0) << j;
  EXPECT_NE(lt.log().find("every kind"), std::string::npos) << lt.log();
  EXPECT_NE(lt.log().find("by kind:"), std::string::npos) << lt.log();
  // The server's open files and threads come from its own metrics.
  EXPECT_GT(json_number(j, "steady_fds_first"), 3) << j;
  EXPECT_GT(json_number(j, "steady_threads_first"), 3) << j;
  EXPECT_NE(j.find("\"server_samples\":[["), std::string::npos) << j;  // the series, one sample a second
  // The summaries' sessions were deleted: only the pool's two are left.
  grpc::ClientContext ctx;
  v1::ListSessionsResponse list;
  ASSERT_TRUE(s->stub->ListSessions(&ctx, v1::ListSessionsRequest(), &list).ok());
  EXPECT_EQ(list.sessions_size(), 2);

  // A scenario that cannot run says why and exits 2.
  {
    std::ofstream f(scenario);
    f << "closed { clients: 2 }\nmix { kind: RESUME weight: 1 }\n";
  }
  Process bad({EDGEINF_LOADTEST_BIN, "--server", s->address(), "run", scenario}, temp_path("loadtest-bad") + ".log");
  ASSERT_TRUE(bad.wait_exit(30));
  EXPECT_TRUE(WIFEXITED(bad.exit_status()) && WEXITSTATUS(bad.exit_status()) == 2) << bad.log();
  EXPECT_NE(bad.log().find("set duration_s, max_requests or both"), std::string::npos) << bad.log();
}

}  // namespace
}  // namespace edgeinf::testing
