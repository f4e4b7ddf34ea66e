// The whole model against the independent Python reference (tests/reference/llama_ref.py),
// teacher-forced: per-position logits within the tolerance table, argmax agreement, and greedy
// continuations token for token. Reference files come from the golden_reference CTest fixture.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

#include "engine/runtime/llama_context.h"
#include "tests/cpu_backends.h"
#include "tests/golden/reference_file.h"
#include "tests/test_paths.h"
#include "tests/tolerances.h"

namespace edgeinf {
namespace {

using testing::read_reference;
using testing::Reference;

struct Entry {
  std::string ref, model;
};

std::vector<Entry> manifest(bool tiny) {
  std::vector<Entry> out;
  const std::string dir = testing::golden_dir();
  std::ifstream in(dir + "/manifest.txt");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ss(line);
    Entry e;
    if (!(ss >> e.ref >> e.model)) continue;
    if ((e.ref.rfind("tiny_", 0) == 0) != tiny) continue;
    e.ref = dir + "/" + e.ref;
    if (e.model[0] != '/') e.model = dir + "/" + e.model;
    out.push_back(e);
  }
  return out;
}

struct Outcome {
  int positions = 0, compared_rows = 0, top1_agree = 0, top1_counted = 0, non_finite = 0;
  double worst_fraction = 0;  // max over rows of max-abs error / logit range
  int worst_row = -1;
  int greedy_match = 0;
};

// Teacher-forced run over the reference tokens, then a greedy continuation of the same length.
Outcome run_one(const LlamaModel& model, const Reference& ref) {
  Outcome o;
  kernels::cpu::ThreadPool pool(2);
  testing::CpuBackends cpu(pool);
  LlamaContextOptions opt;
  opt.kv.n_ctx = int(ref.tokens.size() + ref.gen.size() + 1);
  opt.n_batch = 128;
  auto context = LlamaContext::create(cpu(model), opt);
  EXPECT_TRUE(context.ok()) << context.status();
  if (!context.ok()) return o;
  LlamaContext& ctx = **context;
  const int n_vocab = int(ref.n_vocab);
  std::map<uint32_t, size_t> row_of;
  for (size_t i = 0; i < ref.logit_positions.size(); ++i) row_of[ref.logit_positions[i]] = i;
  std::vector<float> last(static_cast<size_t>(n_vocab));
  for (size_t begin = 0; begin < ref.tokens.size(); begin += size_t(opt.n_batch)) {
    const size_t n = std::min(size_t(opt.n_batch), ref.tokens.size() - begin);
    auto logits = ctx.eval_all_logits(std::span<const TokenId>(ref.tokens.data() + begin, n));
    EXPECT_TRUE(logits.ok()) << logits.status();
    if (!logits.ok()) return o;
    for (size_t t = 0; t < n; ++t) {
      const size_t pos = begin + t;
      const float* l = logits->data() + t * size_t(n_vocab);
      for (int v = 0; v < n_vocab; ++v) o.non_finite += !std::isfinite(l[v]);  // std::max would skip a NaN
      const int top = int(std::max_element(l, l + n_vocab) - l);
      ++o.positions;
      if (ref.margin[pos] > testing::kTop1TieMargin) {
        ++o.top1_counted;
        o.top1_agree += top == ref.top1[pos];
      }
      auto it = row_of.find(uint32_t(pos));
      if (it != row_of.end()) {
        const float* want = ref.logits.data() + it->second * size_t(n_vocab);
        const auto [lo, hi] = std::minmax_element(want, want + n_vocab);
        double max_abs = 0;
        for (int v = 0; v < n_vocab; ++v) max_abs = std::max(max_abs, double(std::fabs(l[v] - want[v])));
        const double fraction = max_abs / std::max(1e-6, double(*hi - *lo));
        ++o.compared_rows;
        if (fraction > o.worst_fraction) {
          o.worst_fraction = fraction;
          o.worst_row = int(pos);
        }
      }
      if (pos + 1 == ref.tokens.size()) std::copy(l, l + n_vocab, last.begin());
    }
  }
  for (int32_t want : ref.gen) {
    const TokenId next = TokenId(std::max_element(last.begin(), last.end()) - last.begin());
    if (next != want) break;
    ++o.greedy_match;
    auto logits = ctx.eval(std::span<const TokenId>(&next, 1));
    if (!logits.ok()) break;
    std::copy(logits->begin(), logits->end(), last.begin());
  }
  return o;
}

void check_all(bool tiny) {
  const std::vector<Entry> entries = manifest(tiny);
  ASSERT_FALSE(entries.empty()) << "no reference files in " << testing::golden_dir()
                                << "/manifest.txt (the golden_reference test writes them)";
  std::map<std::string, std::unique_ptr<LlamaModel>> models;
  for (const Entry& e : entries) {
    SCOPED_TRACE(e.ref);
    Reference ref;
    ASSERT_TRUE(read_reference(e.ref, &ref)) << "cannot read " << e.ref;
    auto& model = models[e.model];
    if (!model) {
      auto loaded = LlamaModel::load(e.model);
      ASSERT_TRUE(loaded.ok()) << loaded.status();
      model = std::move(*loaded);
    }
    ASSERT_EQ(model->config().n_vocab, int(ref.n_vocab));
    const Outcome o = run_one(*model, ref);
    const double agreement = o.top1_counted ? double(o.top1_agree) / o.top1_counted : 1.0;
    std::printf("%-28s %5d tokens  %4d logit rows  worst err/range %.2e (pos %d)  top1 %d/%d  greedy %d/%zu\n",
                e.ref.substr(e.ref.rfind('/') + 1).c_str(), o.positions, o.compared_rows, o.worst_fraction, o.worst_row,
                o.top1_agree, o.top1_counted, o.greedy_match, ref.gen.size());
    EXPECT_EQ(o.positions, int(ref.tokens.size()));
    EXPECT_EQ(o.compared_rows, int(ref.logit_positions.size()));
    EXPECT_EQ(o.non_finite, 0) << "non-finite logits";
    EXPECT_LE(o.worst_fraction, testing::logit_range_fraction(tiny, ref.tokens.size()))
        << "worst position " << o.worst_row;
    EXPECT_GE(agreement, testing::kTop1Agreement);
    const size_t want_greedy = tiny ? ref.gen.size() : std::min(ref.gen.size(), size_t(testing::kGreedyTokens));
    EXPECT_GE(size_t(o.greedy_match), want_greedy) << "greedy continuation diverged at token " << o.greedy_match;
  }
}

TEST(Golden, RealModelMatchesReference) { check_all(false); }
TEST(Golden, TinyModelsMatchReference) { check_all(true); }

}  // namespace
}  // namespace edgeinf
