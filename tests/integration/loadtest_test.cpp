// edgeinf-loadtest against a real server: open-loop arrivals report every status code, latency
// percentiles and the server's resident memory, exit 0 when nothing unexpected failed, and two
// runs compare side by side.
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

}  // namespace
}  // namespace edgeinf::testing
