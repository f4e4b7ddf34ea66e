// The one table of numeric tolerances used across the test suites, the comparison helper that
// reports max-abs, max-rel and the worst index, and seeded random test data.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <map>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace edgeinf::testing {

struct Tolerance {
  double abs;
  double rel;
};

// CPU kernels vs kernels/reference on identical inputs: only summation order and fused
// multiply-add differ, so errors stay at float rounding level.
inline constexpr Tolerance kDequantTol{1e-6, 1e-6};
// Every decoder vs the gguf package's decoding of the same blocks: the same float operations, so
// the values are equal (measured 0 on every type, both CPU paths); a row dot product against them
// within this fraction of sum |w*x| (measured 1.7e-8 at worst, 2048-value rows).
inline constexpr Tolerance kDequantVsGgufTol{0, 0};
inline constexpr double kDotRowVsGguf = 2e-7;
// The vectorised exp (exp_sum) vs std::exp in double: its approximation is good to about 2e-6
// relative, and the bound is that accuracy (measured 0.99 of it with AVX2, 0.95 portable).
inline constexpr Tolerance kExpTol{1e-30, 2e-6};
inline constexpr Tolerance kMatmulTol{1e-4, 1e-4};
inline constexpr Tolerance kElementwiseTol{1e-5, 1e-5};
inline constexpr Tolerance kAttentionTol{1e-5, 1e-4};
// An f16 or q8 cache's keys are decoded, re-rotated and encoded again at every shift of the
// window: the RMS error of a key that lived through 6 shifts (7 encodings), as a multiple of
// encoding it once. Independent errors would give sqrt(7) = 2.65; measured 3.26-3.30 (f16, q8
// normal rotation), 2.85 (q8 neox).
inline constexpr double kEncodedKeyDrift = 4.0;
// Memory ops accumulate d-long sums of products in a different order than the reference.
inline constexpr Tolerance kMemoryTol{1e-4, 1e-4};
// Whole model vs the Python reference (float64 numpy on the same dequantised weights), teacher-forced:
// max-abs logit error per position as a fraction of that position's logit range (max - min), about
// 10x the error measured (worst over the files of each kind; it grows with the number of keys
// summed): tiny random models 1.34e-6; the real model 2.4e-6 on short prompts (<= 256 tokens),
// 5.3e-6 on a 1K-token prompt, 3.5e-5 at position 4565 of a 4.6K-token one. Every position whose
// reference top-2 margin exceeds kTop1TieMargin must have the same argmax, and every logit must be
// finite.
inline constexpr double kLogitRangeFractionTiny = 1.5e-5;
inline constexpr double kLogitRangeFractionShort = 2.5e-5;
inline constexpr double kLogitRangeFractionLong = 6e-5;    // up to 2K tokens
inline constexpr double kLogitRangeFractionLonger = 4e-4;  // beyond
inline constexpr double kTop1Agreement = 1.0;
inline constexpr double kTop1TieMargin = 1e-3;
inline constexpr double logit_range_fraction(bool tiny, size_t n_tokens) {
  if (tiny) return kLogitRangeFractionTiny;
  return n_tokens <= 256    ? kLogitRangeFractionShort
         : n_tokens <= 2048 ? kLogitRangeFractionLong
                            : kLogitRangeFractionLonger;
}
// StreamingLLM and EdgeInfinite vs their Python reference (policy_ref.py), teacher-forced past
// several folds, same measure, ~10x the measured error: tiny models 1.35e-6 (Q4_K, scalar gate,
// delta rule), the real model with the shipped gate 1.66e-6 (887 tokens, 512 folded).
inline constexpr double kPolicyLogitRangeFractionTiny = 1.5e-5;
inline constexpr double kPolicyLogitRangeFractionReal = 2e-5;
// SnapKV and PyramidKV (same selections as the reference's), tiny models: 6.2e-6 measured.
inline constexpr double kSelectionLogitRangeFractionTiny = 6e-5;
// Gate training's batch loss and its gradient with respect to the gate (the engine's backward
// pass in float32) vs central differences of the float64 reference, tiny models, linear gate,
// ~10x the measured error: the loss 1.2e-7 relative; every derivative within 8e-7 of the file's
// largest one (the rel bound applies to that largest one).
inline constexpr Tolerance kGateLossVsReferenceTol{0, 1e-6};
inline constexpr Tolerance kGateGradientVsReferenceTol{0, 1e-5};
// Greedy continuation of the real model must equal the reference's for this many tokens.
inline constexpr int kGreedyTokens = 32;
// CUDA backend vs CPU backend, whole model: max |cuda - cpu| over a logits row as a fraction of the
// row's largest |cpu logit|. The backends sum in different orders (warp reductions, cuBLAS) and the
// differences grow through the layers: random models of 2-3 layers (also a session continued on
// the other device), and the real model's 30 layers.
inline constexpr double kDeviceLogitsRandomModel = 2e-3;
// The same with f16 or q8 KV entries: a key or value the two devices compute a float rounding
// apart can encode one step apart (max |x| / 127 of its block for q8). Not yet measured on a
// device: ten times the f32 bound.
inline constexpr double kDeviceLogitsEncodedKv = 2e-2;
inline constexpr double kDeviceLogitsRealModel = 5e-3;
// CUDA kernels vs kernels/reference (label cuda), |got - want| <= tol * (1 + |want|): element-wise
// ops; reductions reordered across warps and blocks (RoPE angles on the device, attention, memory,
// GEMV, gate); cuBLAS SGEMM; the gate blend (one fused multiply-add apart).
inline constexpr float kCudaElementwiseTol = 1e-5f;
inline constexpr float kCudaReductionTol = 1e-4f;
inline constexpr float kCudaGemmTol = 2e-3f;
inline constexpr float kCudaBlendTol = 1e-6f;

// n normally distributed floats (mean 0, deviation `scale`), the same for the same seed.
inline std::vector<float> random_floats(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

struct Comparison {
  bool ok = true;
  double max_abs = 0;
  double max_rel = 0;
  double bound_used = 0;  // the largest |a-b| / (abs + rel * |b|): 1 is at the bound
  int64_t worst = -1;
  std::string report;
};

// The largest share of each tolerance any comparison in this process used, printed when the process
// ends: how close the suite runs to its bounds (`build/tests/kernel_tests` shows the table).
class BoundUsage {
 public:
  static BoundUsage& get() {
    static BoundUsage usage;
    return usage;
  }
  void add(Tolerance tol, double used, int64_t n) {
    std::lock_guard<std::mutex> lock(mu_);
    Entry& e = entries_[{tol.abs, tol.rel}];
    e.used = std::max(e.used, used);
    e.values += n;
  }
  ~BoundUsage() {
    if (entries_.empty()) return;
    std::fprintf(stderr, "tolerance (abs, rel)      values compared   largest share of the bound used\n");
    for (const auto& [tol, e] : entries_) {
      std::fprintf(stderr, "(%.0e, %.0e)  %16lld   %.3g\n", tol.first, tol.second, static_cast<long long>(e.values),
                   e.used);
    }
  }

 private:
  struct Entry {
    double used = 0;
    int64_t values = 0;
  };
  std::mutex mu_;
  std::map<std::pair<double, double>, Entry> entries_;
};

// Element i passes when |a-b| <= abs + rel * |b|.
template <typename A, typename B>
Comparison compare(const A* a, const B* b, int64_t n, Tolerance tol) {
  Comparison c;
  double worst_excess = -1;
  for (int64_t i = 0; i < n; ++i) {
    const double x = double(a[i]), y = double(b[i]);
    const double err = std::fabs(x - y);
    const double rel = err / std::max(std::fabs(y), 1e-30);
    const double bound = tol.abs + tol.rel * std::fabs(y);
    if (!(err <= bound)) c.ok = false;
    c.bound_used = std::max(c.bound_used, bound > 0 ? err / bound : (err > 0 ? INFINITY : 0.0));
    if (std::isnan(err)) c.bound_used = INFINITY;
    c.max_abs = std::max(c.max_abs, err);
    if (std::fabs(y) > tol.abs) c.max_rel = std::max(c.max_rel, rel);
    const double excess = err - tol.rel * std::fabs(y);
    if (excess > worst_excess || std::isnan(err)) {
      worst_excess = std::isnan(err) ? INFINITY : excess;
      c.worst = i;
    }
  }
  BoundUsage::get().add(tol, c.bound_used, n);
  std::ostringstream os;
  os << "n=" << n << " max_abs=" << c.max_abs << " max_rel=" << c.max_rel << " worst index " << c.worst;
  if (c.worst >= 0) os << " (got " << double(a[c.worst]) << ", want " << double(b[c.worst]) << ")";
  c.report = os.str();
  return c;
}

}  // namespace edgeinf::testing
