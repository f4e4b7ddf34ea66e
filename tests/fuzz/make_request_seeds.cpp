// Writes the request fuzzer's seed corpus into DIR: Generate requests of every input kind, with and
// without a session, sampling, stop strings, progress and etag, and a few that must be refused.
#include <cstdio>
#include <fstream>
#include <string>

#include "edgeinfinite/v1/inference.pb.h"

namespace v1 = edgeinfinite::v1;

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_request_seeds DIR\n");
    return 2;
  }
  std::vector<v1::GenerateRequest> seeds;
  v1::GenerateRequest r;
  r.set_text("Once upon a time");
  seeds.push_back(r);
  r.set_session("sessions/0123456789abcdef0123456789abcdef");
  r.mutable_sampling()->set_temperature(0.7f);
  r.mutable_sampling()->set_top_k(40);
  r.mutable_sampling()->set_top_p(0.9f);
  r.mutable_sampling()->set_min_p(0.05f);
  r.mutable_sampling()->set_repetition_penalty(1.1f);
  r.mutable_sampling()->set_seed(7);
  r.mutable_stop()->set_max_tokens(16);
  r.mutable_stop()->add_stop("\n\n");
  r.mutable_stop()->set_ignore_eos(true);
  r.set_progress_every_tokens(64);
  r.set_etag("3");
  seeds.push_back(r);
  v1::GenerateRequest m;
  for (const char* role : {"system", "user", "assistant", "user"}) {
    v1::ChatMessage* msg = m.mutable_messages()->add_messages();
    msg->set_role(role);
    msg->set_content(std::string("a message from the ") + role + " <|im_end|>");
  }
  seeds.push_back(m);
  m.mutable_messages()->mutable_messages(0)->set_role("narrator");
  seeds.push_back(m);
  v1::GenerateRequest t;
  for (int id : {1, 504, 49151, 49152, -1}) t.mutable_token_ids()->add_ids(id);
  seeds.push_back(t);
  v1::GenerateRequest bad;
  bad.set_session("sessions/../x");
  bad.mutable_stop()->set_max_tokens(-1);
  bad.mutable_sampling()->set_temperature(-1);
  seeds.push_back(bad);
  for (size_t i = 0; i < seeds.size(); ++i) {
    std::ofstream out(std::string(argv[1]) + "/request" + std::to_string(i), std::ios::binary);
    out << seeds[i].SerializeAsString();
  }
  return 0;
}
