// KV policies against their independent Python reference (tests/reference/policy_ref.py),
// teacher-forced in batches of L past several folds or selections: StreamingLLM, EdgeInfinite
// (random scalar and linear gates, both update rules), SnapKV and PyramidKV on tiny models of three
// shapes, and StreamingLLM and EdgeInfinite with the shipped gate on the real model. Reference files come from the
// golden_reference CTest fixture (policy_manifest.txt).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <sstream>

#include "engine/kv/memory_gate.h"
#include "engine/kv/snapkv_policy.h"
#include "engine/runtime/llama_context.h"
#include "tests/cpu_backends.h"
#include "tests/golden/bin_gate.h"
#include "tests/golden/reference_file.h"
#include "tests/test_paths.h"
#include "tests/tolerances.h"

namespace edgeinf {
namespace {

struct PolicyEntry {
  std::string ref, model, policy, update, gate;
  int sink = 0, window = 0, segment = 0;
};

std::vector<PolicyEntry> policy_manifest(bool tiny) {
  std::vector<PolicyEntry> out;
  const std::string dir = testing::golden_dir();
  std::ifstream in(dir + "/policy_manifest.txt");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ss(line);
    PolicyEntry e;
    if (!(ss >> e.ref >> e.model >> e.policy >> e.sink >> e.window >> e.segment >> e.update >> e.gate)) continue;
    if ((e.ref.find("_tiny_") != std::string::npos) != tiny) continue;
    e.ref = dir + "/" + e.ref;
    if (e.model[0] != '/') e.model = dir + "/" + e.model;
    if (e.gate != "none" && e.gate[0] != '/') e.gate = dir + "/" + e.gate;
    out.push_back(e);
  }
  return out;
}

// What a selection session of the reference holds at the end (make_golden.write_kept): per layer
// and KV head the absolute positions, in cache order.
bool read_kept(const std::string& path, std::vector<std::vector<std::vector<int32_t>>>* kept) {
  std::ifstream in(path, std::ios::binary);
  uint32_t n_layer = 0, n_kv_head = 0;
  if (!in.read(reinterpret_cast<char*>(&n_layer), 4) || !in.read(reinterpret_cast<char*>(&n_kv_head), 4)) return false;
  kept->assign(n_layer, std::vector<std::vector<int32_t>>(n_kv_head));
  for (auto& layer : *kept) {
    for (auto& head : layer) {
      uint32_t n = 0;
      if (!in.read(reinterpret_cast<char*>(&n), 4) || n > (1u << 20) || !testing::read_vec(in, head, n)) return false;
    }
  }
  return true;
}

// The engine keeps, per layer and KV head, exactly the positions the reference selects.
void check_kept_positions(const PolicyEntry& e, const KvPolicy& policy) {
  const auto* selection = dynamic_cast<const SelectionPolicy*>(&policy);
  ASSERT_NE(selection, nullptr) << e.policy << " is not a selection policy";
  std::vector<std::vector<std::vector<int32_t>>> want;
  const std::string path = e.ref.substr(0, e.ref.size() - 4) + ".kept";
  ASSERT_TRUE(read_kept(path, &want)) << "cannot read " << path;
  int heads = 0, equal = 0;
  for (size_t il = 0; il < want.size(); ++il) {
    for (size_t g = 0; g < want[il].size(); ++g) {
      const std::vector<int32_t> got = selection->kept_positions(int(il), int(g));
      ++heads;
      equal += got == want[il][g];
      EXPECT_EQ(got, want[il][g]) << "layer " << il << " KV head " << g;
    }
  }
  std::printf("%-44s kept positions equal on %d of %d (layer, KV head)\n", e.ref.substr(e.ref.rfind('/') + 1).c_str(),
              equal, heads);
}

void check_policies(bool tiny) {
  const std::vector<PolicyEntry> entries = policy_manifest(tiny);
  ASSERT_FALSE(entries.empty()) << "no entries in " << testing::golden_dir()
                                << "/policy_manifest.txt (the golden_reference test writes them)";
  std::map<std::string, std::unique_ptr<LlamaModel>> models;
  kernels::cpu::ThreadPool pool(2);
  testing::CpuBackends cpu(pool);
  for (const PolicyEntry& e : entries) {
    SCOPED_TRACE(e.ref);
    testing::Reference ref;
    ASSERT_TRUE(testing::read_reference(e.ref, &ref)) << "cannot read " << e.ref;
    auto& model = models[e.model];
    if (!model) {
      auto loaded = LlamaModel::load(e.model);
      ASSERT_TRUE(loaded.ok()) << loaded.status();
      model = std::move(*loaded);
    }
    const AttentionShape shape = AttentionShape::of(*model);
    KvPolicyOptions kv;
    kv.name = e.policy;
    kv.sink = e.sink;
    kv.window = e.window;
    kv.segment = e.segment;
    auto update = parse_memory_update(e.update);
    ASSERT_TRUE(update.ok());
    kv.update = *update;
    std::unique_ptr<MemoryGate> gate;
    if (e.gate.size() > 4 && e.gate.substr(e.gate.size() - 4) == ".bin") {
      gate =
          testing::read_bin_gate(e.gate, shape, GateConfig{GateKind::kScalar, e.sink, e.window, e.segment, kv.update});
      ASSERT_NE(gate, nullptr) << "cannot read " << e.gate;
    } else if (e.gate != "none") {
      auto loaded = MemoryGate::load(e.gate, shape, model->gguf().fingerprint());
      ASSERT_TRUE(loaded.ok()) << loaded.status();
      gate = std::move(*loaded);
    }
    kv.gate = gate.get();
    LlamaContextOptions opt;
    opt.kv = kv;
    opt.n_batch = e.segment;
    auto context = LlamaContext::create(cpu(*model), opt);
    ASSERT_TRUE(context.ok()) << context.status();
    const int n_vocab = int(ref.n_vocab);
    ASSERT_EQ(model->config().n_vocab, n_vocab);
    std::map<uint32_t, size_t> row_of;
    for (size_t i = 0; i < ref.logit_positions.size(); ++i) row_of[ref.logit_positions[i]] = i;
    double worst = 0;
    int worst_pos = -1, rows = 0, non_finite = 0, agree = 0, counted = 0;
    for (size_t begin = 0; begin < ref.tokens.size(); begin += size_t(e.segment)) {
      const size_t n = std::min(size_t(e.segment), ref.tokens.size() - begin);
      auto logits = (*context)->eval_all_logits(std::span<const TokenId>(ref.tokens.data() + begin, n));
      ASSERT_TRUE(logits.ok()) << logits.status();
      for (size_t t = 0; t < n; ++t) {
        const size_t pos = begin + t;
        const float* l = logits->data() + t * size_t(n_vocab);
        for (int v = 0; v < n_vocab; ++v) non_finite += !std::isfinite(l[v]);
        if (ref.margin[pos] > testing::kTop1TieMargin) {
          ++counted;
          agree += int(std::max_element(l, l + n_vocab) - l) == ref.top1[pos];
        }
        auto it = row_of.find(uint32_t(pos));
        if (it == row_of.end()) continue;
        const float* want = ref.logits.data() + it->second * size_t(n_vocab);
        const auto [lo, hi] = std::minmax_element(want, want + n_vocab);
        double max_abs = 0;
        for (int v = 0; v < n_vocab; ++v) max_abs = std::max(max_abs, double(std::fabs(l[v] - want[v])));
        ++rows;
        const double fraction = max_abs / std::max(1e-6, double(*hi - *lo));
        if (fraction > worst) worst = fraction, worst_pos = int(pos);
      }
    }
    const int64_t folded = (*context)->policy().n_compressed();
    std::printf("%-44s %4zu tokens %3d rows %4lld folded  worst err/range %.2e (pos %d)  top1 %d/%d\n",
                e.ref.substr(e.ref.rfind('/') + 1).c_str(), ref.tokens.size(), rows, static_cast<long long>(folded),
                worst, worst_pos, agree, counted);
    EXPECT_GE(folded, 3 * e.segment) << "the comparison must run past several folds";
    EXPECT_EQ(rows, int(ref.logit_positions.size()));
    EXPECT_EQ(non_finite, 0);
    const bool selects = e.policy == "snapkv" || e.policy == "pyramidkv";
    EXPECT_LE(worst, !tiny     ? testing::kPolicyLogitRangeFractionReal
                     : selects ? testing::kSelectionLogitRangeFractionTiny
                               : testing::kPolicyLogitRangeFractionTiny)
        << "worst position " << worst_pos;
    EXPECT_EQ(agree, counted);
    if (selects) check_kept_positions(e, (*context)->policy());
  }
}

TEST(PolicyGolden, TinyModelsMatchTheReference) { check_policies(true); }
TEST(PolicyGolden, RealModelWithTheShippedGateMatchesTheReference) { check_policies(false); }

}  // namespace
}  // namespace edgeinf
