// PyramidKV: SnapKV selection with per-layer budgets that shrink linearly with depth; the mean
// budget equals `budget`, the top layer keeps about (budget - w) / beta selected entries.
#include <algorithm>
#include <cmath>

#include "engine/kv/snapkv_policy.h"

namespace edgeinf {
namespace {

std::vector<int64_t> pyramid_budgets(int n_layer, int64_t budget, int64_t window, float beta) {
  const double lo = double(budget - window) / beta;
  const double hi = 2.0 * double(budget - window) - lo;
  const double step = n_layer > 1 ? (hi - lo) / double(n_layer - 1) : 0.0;
  std::vector<int64_t> out;
  for (int il = 0; il < n_layer; ++il) out.push_back(int64_t(std::llround(hi - il * step)) + window);
  return out;
}

}  // namespace

// Keeps its arrays on the host: the store maker is not used.
StatusOr<std::unique_ptr<KvPolicy>> make_pyramidkv_policy(const KvPolicyOptions& o, const AttentionShape& s,
                                                          const KvStoreMaker&) {
  const int64_t budget = o.budget > 0 ? o.budget : int64_t(o.sink) + o.window;
  return std::unique_ptr<KvPolicy>(std::make_unique<SelectionPolicy>(
      "pyramidkv", s, o, pyramid_budgets(s.n_layer, budget, o.obs_window, o.pyramid_beta)));
}

}  // namespace edgeinf
