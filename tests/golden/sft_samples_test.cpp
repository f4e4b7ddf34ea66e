// S-SFT samples on the real model's tokenizer and real prose (Acts 1-16): each sample is its
// document, then its question, then its answer, tokenised as the text says; what a question asks
// about is stated before the exact window (facts) or lies in a part that ends before it, and the
// outline names every part by a term of its own; the samples are deterministic for a seed and
// share no wording with the evaluations.
#include "engine/calibration/sft_samples.h"

#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "engine/model/gguf.h"
#include "engine/tokenizer/document_sections.h"
#include "tests/must.h"
#include "tests/test_paths.h"

namespace edgeinf {
namespace {

class SftSamplesTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto gguf = testing::must(GgufFile::open(testing::test_model_path()), "the real model");
    tok_ = testing::must(Tokenizer::from_gguf(*gguf), "its tokenizer").release();
    std::ifstream in(testing::test_data_dir() + "/acts-1-16.txt");
    std::stringstream ss;
    ss << in.rdbuf();
    paragraphs_ = new std::vector<std::vector<TokenId>>;
    for (absl::string_view p : absl::StrSplit(ss.str(), "\n\n", absl::SkipWhitespace())) {
      paragraphs_->push_back(tok_->encode(std::string(p), false, false));
    }
  }
  static void TearDownTestSuite() {
    delete tok_;
    delete paragraphs_;
  }
  static SftSampleOptions small() {
    SftSampleOptions o;
    o.context = 600;
    o.recent = 104;
    o.samples = 9;
    o.parts = 3;
    o.seed = 1;
    return o;
  }
  std::string text(const GateTrainingSample& s, int64_t from, int64_t to) const {
    return tok_->decode(std::span<const TokenId>(s.tokens.data() + from, size_t(to - from)));
  }
  static Tokenizer* tok_;
  static std::vector<std::vector<TokenId>>* paragraphs_;
};
Tokenizer* SftSamplesTest::tok_ = nullptr;
std::vector<std::vector<TokenId>>* SftSamplesTest::paragraphs_ = nullptr;

TEST_F(SftSamplesTest, QuestionsAskAboutWhatLiesBeforeTheWindow) {
  const SftSampleOptions o = small();
  const auto samples = testing::must(make_sft_samples(*tok_, *paragraphs_, o), "samples");
  ASSERT_EQ(samples.size(), 9u);
  for (size_t i = 0; i < samples.size(); ++i) {
    SCOPED_TRACE(absl::StrCat("sample ", i));
    const SftSample& s = samples[i];
    const GateTrainingSample& t = s.sample;
    const int64_t n = int64_t(t.tokens.size());
    EXPECT_EQ(int(s.task), int(i % 3));
    ASSERT_TRUE(0 < t.document_end && t.document_end < t.score_from && t.score_from < n);
    EXPECT_EQ(text(t, t.document_end, t.score_from), s.question);
    EXPECT_EQ(text(t, t.score_from, n), s.answer);
    const std::string far = text(t, 0, t.document_end - o.recent);
    const std::string doc = text(t, 0, t.document_end);
    for (const char* eval_wording : {"Question:", "Answer:", "keeps the", "Section "}) {
      EXPECT_EQ((doc + s.question).find(eval_wording), std::string::npos) << eval_wording;
    }
    std::smatch m;
    if (s.task == SftTask::kFact) {
      EXPECT_EQ(t.document_end, o.context);
      ASSERT_TRUE(std::regex_search(s.question, m, std::regex("Where did (.+) leave the (.+)\\?")));
      const std::string place = s.answer.substr(1, s.answer.size() - 2);  // " <place>."
      EXPECT_NE(far.find(absl::StrCat(m[1].str(), " left the ", m[2].str(), " in the ", place, ".")), std::string::npos)
          << "the fact is not stated before the window";
    } else if (s.task == SftTask::kPart) {
      ASSERT_TRUE(std::regex_search(s.question, m, std::regex("part ([0-9]+) tell of")));
      const int k = std::stoi(m[1].str());
      const size_t begin = far.find(absl::StrCat("Part ", k, ".\n"));
      const size_t end = far.find(absl::StrCat("Part ", k + 1, ".\n"));
      ASSERT_NE(begin, std::string::npos);
      ASSERT_NE(end, std::string::npos) << "part " << k << " does not end before the window";
      const std::string part = far.substr(begin, end - begin);
      for (absl::string_view term : absl::StrSplit(s.answer.substr(1, s.answer.size() - 2), " and ")) {
        EXPECT_TRUE(has_word(part, std::string(term))) << term << " is not in part " << k;
        EXPECT_FALSE(has_word(doc.substr(0, begin) + doc.substr(end), std::string(term))) << term;
      }
    } else {
      const std::vector<std::string> lines = absl::StrSplit(s.answer.substr(1), '\n');
      ASSERT_EQ(lines.size(), size_t(o.parts));
      for (int k = 1; k <= o.parts; ++k) {
        ASSERT_TRUE(std::regex_match(lines[size_t(k - 1)], m, std::regex(absl::StrCat("Part ", k, ": (\\w+)\\."))))
            << lines[size_t(k - 1)];
        const size_t begin = doc.find(absl::StrCat("Part ", k, ".\n"));
        const size_t end = k == o.parts ? doc.size() : doc.find(absl::StrCat("Part ", k + 1, ".\n"));
        ASSERT_TRUE(begin != std::string::npos && end != std::string::npos);
        EXPECT_TRUE(has_word(doc.substr(begin, end - begin), m[1].str()));
        EXPECT_FALSE(has_word(doc.substr(0, begin) + doc.substr(end), m[1].str()));
      }
    }
  }
}

TEST_F(SftSamplesTest, DeterministicForASeed) {
  SftSampleOptions o = small();
  const auto a = testing::must(make_sft_samples(*tok_, *paragraphs_, o), "samples");
  const auto b = testing::must(make_sft_samples(*tok_, *paragraphs_, o), "samples");
  o.seed = 2;
  const auto c = testing::must(make_sft_samples(*tok_, *paragraphs_, o), "samples");
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].sample.tokens, b[i].sample.tokens) << i;
    EXPECT_NE(a[i].sample.tokens, c[i].sample.tokens) << i;
  }
}

TEST_F(SftSamplesTest, RefusesWhatTheProseCannotHold) {
  SftSampleOptions o = small();
  o.recent = o.context;
  EXPECT_EQ(make_sft_samples(*tok_, *paragraphs_, o).status().code(), absl::StatusCode::kInvalidArgument);
  o = small();
  o.parts = 30;  // 20 tokens a part
  const auto st = make_sft_samples(*tok_, *paragraphs_, o).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("sample 1 (part)"), std::string::npos) << st;
  EXPECT_EQ(make_sft_samples(*tok_, {}, small()).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace edgeinf
