// Ingest: a document in pieces cut anywhere (inside characters too) arrives whole; an upload that
// cannot be read, is not UTF-8, is cancelled or breaks off commits nothing; edgeinf-client
// summarize uploads non-ASCII files whole.
#include "tests/integration/harness.h"

namespace edgeinf {
namespace {

using namespace edgeinf::testing;  // NOLINT: the harness is this file's vocabulary

// A document whose characters take 1 to 4 bytes.
std::string mixed_document(int repeats) {
  std::string doc;
  for (int i = 0; i < repeats; ++i) {
    doc += "The naïve café served crème brûlée — 東京の夜は静かだった 😀🎉. ";
    doc += kStory;
  }
  return doc;
}

std::vector<std::string> cut_every(const std::string& doc, size_t n) {
  std::vector<std::string> pieces;
  for (size_t off = 0; off < doc.size(); off += n) pieces.push_back(doc.substr(off, n));
  return pieces;
}

TEST(Ingest, PiecesCutInsideCharactersArriveWhole) {
  auto s = Server::start(temp_store());
  const std::string doc = mixed_document(6);
  const std::string whole = create_session(*s->stub), pieces = create_session(*s->stub);
  v1::IngestResponse a, b;
  ASSERT_TRUE(ingest(*s->stub, whole, {doc}, &a).ok());
  const grpc::Status st = ingest(*s->stub, pieces, cut_every(doc, 7), &b);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(b.ingested_tokens(), a.ingested_tokens());
  EXPECT_EQ(b.session().total_tokens(), a.session().total_tokens());
  EXPECT_EQ(b.session().total_tokens(), b.ingested_tokens());
  // The same state: the same greedy continuation.
  v1::GenerateRequest r = text_request(whole, " The keeper", 12, 1);
  r.mutable_sampling()->set_temperature(0);
  const Turn ta = generate(*s->stub, r);
  r.set_session(pieces);
  const Turn tb = generate(*s->stub, r);
  ASSERT_TRUE(ta.status.ok() && tb.status.ok());
  EXPECT_EQ(ta.text, tb.text);
  // Ingested tokens are counted.
  EXPECT_EQ(metric(scrape(*s), "edgeinf_tokens_total{kind=\"ingested\"}"),
            double(a.ingested_tokens() + b.ingested_tokens()));
}

// The session's etag and tokens, to show an upload left it as it was.
std::pair<std::string, int64_t> state_of(v1::Inference::Stub& stub, const std::string& name) {
  v1::Session info;
  EXPECT_TRUE(get_session(stub, name, &info).ok());
  return {info.etag(), info.total_tokens()};
}

TEST(Ingest, UnreadableOrNonUtf8UploadsCommitNothing) {
  auto s = Server::start(temp_store());
  const std::string a = create_session(*s->stub);
  v1::IngestResponse r;
  ASSERT_TRUE(ingest(*s->stub, a, {kStory}, &r).ok());
  const auto before = state_of(*s->stub, a);
  const std::string doc = mixed_document(3);

  // A message that is not an IngestRequest, after good ones.
  {
    v1::IngestRequest first;
    first.set_session(a);
    first.set_text(doc.substr(0, 500));
    const RawResult res = raw_call(s->channel, "/edgeinfinite.v1.Inference/Ingest",
                                   {first.SerializeAsString(), std::string("\x12\xff\xff\xff\xff", 5)});
    EXPECT_EQ(res.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << res.status.error_message();
    EXPECT_NE(res.status.error_message().find("edgeinfinite.v1.IngestRequest"), std::string::npos)
        << res.status.error_message();
    EXPECT_EQ(state_of(*s->stub, a), before);
  }
  // A document that is not UTF-8 (a lone continuation byte in the middle).
  {
    std::vector<std::string> pieces = cut_every(doc, 100);
    ASSERT_GT(pieces.size(), 5u);
    pieces[4][10] = '\x80';
    const grpc::Status st = ingest(*s->stub, a, pieces, &r);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message();
    EXPECT_NE(st.error_message().find("not valid UTF-8"), std::string::npos) << st.error_message();
    EXPECT_EQ(state_of(*s->stub, a), before);
  }
  // A document ending inside a character.
  {
    const std::string cut = doc.substr(0, doc.find("😀") + 2);
    const grpc::Status st = ingest(*s->stub, a, {cut}, &r);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message();
    EXPECT_EQ(state_of(*s->stub, a), before);
  }
  // An upload with no message at all.
  {
    const RawResult res = raw_call(s->channel, "/edgeinfinite.v1.Inference/Ingest", {});
    EXPECT_EQ(res.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << res.status.error_message();
  }
  // The session still takes a good upload.
  EXPECT_TRUE(ingest(*s->stub, a, cut_every(doc, 333), &r).ok());
}

TEST(Ingest, CancelledOrBrokenOffUploadsCommitNothing) {
  auto s = Server::start(temp_store());
  const std::string a = create_session(*s->stub);
  v1::IngestResponse r;
  ASSERT_TRUE(ingest(*s->stub, a, {kStory}, &r).ok());
  const auto before = state_of(*s->stub, a);
  std::string big;
  for (int i = 0; i < 40; ++i) big += kStory;
  // Cancelled by the client after several pieces (some already prefilled).
  {
    grpc::ClientContext ctx;
    auto w = s->stub->Ingest(&ctx, &r);
    for (size_t off = 0; off < big.size(); off += 1000) {
      v1::IngestRequest req;
      if (off == 0) req.set_session(a);
      req.set_text(big.substr(off, 1000));
      if (!w->Write(req)) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    ctx.TryCancel();
    EXPECT_EQ(w->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  // The client process dies mid-upload (edgeinf-client summarize, killed).
  {
    const std::string file = temp_path("big") + ".txt";
    std::ofstream(file) << big << big << big;
    Process client({EDGEINF_CLIENT_BIN, "--server", s->address(), "summarize", file}, temp_path("client") + ".log");
    ASSERT_TRUE(client.wait_for_log("session sessions/", 30)) << client.log();
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    client.stop(SIGKILL);
  }
  // Neither changed the session; the server is fine.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(state_of(*s->stub, a), before);
  EXPECT_TRUE(ingest(*s->stub, a, {kStory}, &r).ok());
}

TEST(Ingest, ClientSummarizeUploadsNonAsciiFilesWhole) {
  auto s = Server::start(temp_store());
  // A multi-byte character across the client's 64 KiB piece boundary; lines of '#' (80 to a
  // token) keep the upload short.
  std::string doc;
  while (doc.size() < 65534 - 81) doc += std::string(80, '#') + "\n";
  doc += std::string(65534 - doc.size(), '#');
  doc += "😀 東京の夜は静かだった。 Crème brûlée.\n";
  for (int i = 0; i < 20; ++i) doc += std::string(80, '#') + "\n";
  const std::string file = temp_path("nonascii") + ".txt";
  std::ofstream(file) << doc;
  const std::string out = temp_path("summarize") + ".txt";
  const std::string cmd =
      std::string(EDGEINF_CLIENT_BIN) + " --server " + s->address() + " summarize " + file + " > " + out + " 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << read_all(out);
  std::smatch m;
  const std::string log = read_all(out);
  ASSERT_TRUE(std::regex_search(log, m, std::regex("ingested ([0-9]+) tokens"))) << log;
  // The same count as the document uploaded in one piece.
  const std::string reference = create_session(*s->stub);
  v1::IngestResponse r;
  grpc::ClientContext ctx;
  std::vector<std::string> pieces = cut_every(doc, 3 << 20);
  ASSERT_TRUE(ingest(*s->stub, reference, pieces, &r).ok());
  EXPECT_EQ(std::stoll(m[1].str()), r.ingested_tokens()) << log;
}

}  // namespace
}  // namespace edgeinf
