// libFuzzer target: arbitrary bytes as a Generate request, through the service's own path: the
// bytes as gRPC hands them over (parse_request), the request as a turn (turn_request), then the
// engine's checks with the real model (Engine::check_turn, as a turn that opens a conversation and
// as a later one). Checked on every input: a refusal is INVALID_ARGUMENT or OUT_OF_RANGE with a
// short, well-formed UTF-8 message (what a client shows its user); an accepted turn has a non-empty
// prompt within the limit. The model is EDGEINF_MODEL, else the one
// the build was configured with.
#include <google/protobuf/stubs/logging.h>
#include <grpcpp/grpcpp.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "engine/api/engine.h"
#include "engine/api/text.h"
#include "server/service.h"

namespace {

using namespace edgeinf;

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "request_fuzz: %s\n", what.c_str());
  std::abort();
}

Engine& engine() {
  static const std::unique_ptr<Engine> e = [] {
    google::protobuf::SetLogHandler(nullptr);  // the parser's complaints about bad UTF-8, by the million
    const char* env = std::getenv("EDGEINF_MODEL");
    EngineConfig c;
    c.model_path = env != nullptr && *env != '\0' ? env : EDGEINF_FUZZ_MODEL_PATH;
    c.gate_path = "none";
    c.threads = 1;
    c.device = "cpu";
    c.max_prompt_tokens = 4096;  // small, so that the fuzzer meets the limit
    const std::string store = (std::filesystem::temp_directory_path() / "edgeinf-request-fuzz").string();
    std::filesystem::create_directories(store);
    auto made = Engine::create(c, [store] { return open_dir_store(store); });
    if (!made.ok()) {
      std::fprintf(stderr, "request_fuzz: %s\n", made.status().ToString().c_str());
      std::exit(2);
    }
    return std::move(*made);
  }();
  return *e;
}

void check_refusal(const Status& st) {
  if (st.code() != absl::StatusCode::kInvalidArgument && st.code() != absl::StatusCode::kOutOfRange) {
    fail("a request refused with " + st.ToString());
  }
  const std::string message(st.message());
  if (message.size() > 512) fail("an error message of " + std::to_string(message.size()) + " bytes");
  if (!valid_utf8(message)) fail("an error message that is not UTF-8: " + message);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Engine& e = engine();
  grpc::Slice slice(data, size);
  const grpc::ByteBuffer bytes(&slice, 1);
  server::v1::GenerateRequest req;
  if (Status st = server::parse_request(bytes, &req); !st.ok()) return check_refusal(st), 0;
  StatusOr<TurnRequest> turn = server::turn_request(req);
  if (!turn.ok()) return check_refusal(turn.status()), 0;
  for (bool fresh : {true, false}) {
    StatusOr<std::vector<TokenId>> tokens = e.check_turn(*turn, fresh);
    if (!tokens.ok()) {
      check_refusal(tokens.status());
      continue;
    }
    if (int64_t(tokens->size()) > e.config().max_prompt_tokens) fail("a prompt over the limit accepted");
    if (tokens->empty() && turn->session_id.empty()) fail("an empty one-off prompt accepted");
  }
  return 0;
}
