// The sampler chain in the usual order: penalties -> top-k -> top-p -> min-p -> temperature -> draw.
#include "engine/sampling/sampler.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace edgeinf {

Status validate(const SamplingParams& p) {
  if (!std::isfinite(p.temperature) || p.temperature < 0) return absl::InvalidArgumentError("temperature must be >= 0");
  if (p.top_k < 0) return absl::InvalidArgumentError("top_k must be >= 0");
  if (!(p.top_p > 0 && p.top_p <= 1)) return absl::InvalidArgumentError("top_p must be in (0, 1]");
  if (!(p.min_p >= 0 && p.min_p < 1)) return absl::InvalidArgumentError("min_p must be in [0, 1)");
  if (!(p.repeat_penalty > 0) || !std::isfinite(p.repeat_penalty)) {
    return absl::InvalidArgumentError("repeat_penalty must be > 0");
  }
  if (p.repeat_last_n < 0) return absl::InvalidArgumentError("repeat_last_n must be >= 0");
  return absl::OkStatus();
}

Sampler::Sampler(const SamplingParams& params, int n_vocab) : params_(params), n_vocab_(n_vocab), rng_(params.seed) {
  candidates_.reserve(size_t(n_vocab));
  probs_.reserve(size_t(n_vocab));
}

void Sampler::accept(int32_t token) {
  if (params_.repeat_last_n == 0) return;
  if (recent_.size() < size_t(params_.repeat_last_n)) {
    recent_.push_back(token);
    penalized_.reserve(recent_.capacity());
    return;
  }
  recent_[next_] = token;
  next_ = (next_ + 1) % recent_.size();
}

int32_t Sampler::sample(std::span<const float> logits) {
  candidates_.clear();
  for (int i = 0; i < n_vocab_; ++i) candidates_.push_back({i, logits[size_t(i)]});

  if (params_.repeat_penalty != 1.0f && !recent_.empty()) {
    // Each distinct recent token once.
    penalized_.assign(recent_.begin(), recent_.end());
    std::sort(penalized_.begin(), penalized_.end());
    penalized_.erase(std::unique(penalized_.begin(), penalized_.end()), penalized_.end());
    for (int32_t id : penalized_) {
      if (id < 0 || id >= n_vocab_) continue;
      float& l = candidates_[size_t(id)].logit;
      l = l > 0 ? l / params_.repeat_penalty : l * params_.repeat_penalty;
    }
  }

  auto by_logit = [](const Candidate& a, const Candidate& b) {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
  };
  if (params_.temperature <= 0) {
    return std::min_element(candidates_.begin(), candidates_.end(), by_logit)->id;
  }

  size_t n = candidates_.size();
  if (params_.top_k > 0 && size_t(params_.top_k) < n) {
    n = size_t(params_.top_k);
    std::partial_sort(candidates_.begin(), candidates_.begin() + long(n), candidates_.end(), by_logit);
  } else {
    std::sort(candidates_.begin(), candidates_.end(), by_logit);
  }
  candidates_.resize(n);

  // Probabilities at temperature 1 decide top-p and min-p, as in the reference samplers.
  probs_.resize(n);
  double* probs = probs_.data();
  const double max_logit = candidates_[0].logit;
  double sum = 0;
  for (size_t i = 0; i < n; ++i) sum += probs[i] = std::exp(double(candidates_[i].logit) - max_logit);
  if (params_.top_p < 1.0f) {
    double cum = 0;
    size_t keep = n;
    for (size_t i = 0; i < n; ++i) {
      cum += probs[i] / sum;
      if (cum >= params_.top_p) {
        keep = i + 1;
        break;
      }
    }
    n = keep;
  }
  if (params_.min_p > 0.0f) {
    const double threshold = params_.min_p * probs[0];
    size_t keep = 1;
    while (keep < n && probs[keep] >= threshold) ++keep;
    n = keep;
  }

  double total = 0;
  for (size_t i = 0; i < n; ++i) {
    probs[i] = std::exp((double(candidates_[i].logit) - max_logit) / params_.temperature);
    total += probs[i];
  }
  // A 53-bit uniform draw in [0, total).
  const double u = double(rng_() >> 11) * (1.0 / 9007199254740992.0) * total;
  double cum = 0;
  for (size_t i = 0; i < n; ++i) {
    cum += probs[i];
    if (u < cum) return candidates_[i].id;
  }
  return candidates_[n - 1].id;
}

}  // namespace edgeinf
