// Token sampling: repetition penalty, top-k, top-p, min-p and temperature, then a seeded draw.
// temperature <= 0 is greedy (argmax). Same seed and inputs give the same tokens.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "engine/util/status.h"

namespace edgeinf {

struct SamplingParams {
  float temperature = 0.8f;
  int top_k = 40;               // 0 = off
  float top_p = 0.95f;          // 1 = off
  float min_p = 0.05f;          // 0 = off
  float repeat_penalty = 1.0f;  // 1 = off
  int repeat_last_n = 64;       // tokens the penalty looks back over
  uint64_t seed = 0;
};

// InvalidArgument naming the first parameter out of range.
Status validate(const SamplingParams& p);

class Sampler {
 public:
  Sampler(const SamplingParams& params, int n_vocab);

  // Picks the next token from logits [n_vocab]; does not record it (see accept).
  int32_t sample(std::span<const float> logits);
  // Records a token (prompt or generated) for the repetition penalty.
  void accept(int32_t token);
  const SamplingParams& params() const { return params_; }

 private:
  struct Candidate {
    int32_t id;
    float logit;
  };
  SamplingParams params_;
  int n_vocab_;
  std::mt19937_64 rng_;
  // The last repeat_last_n accepted tokens, a ring that grows to that size and then wraps (next_:
  // where the next one goes), and a sorted copy for the penalty; the draw's probabilities. Sized
  // once: sampling allocates nothing.
  std::vector<int32_t> recent_, penalized_;
  size_t next_ = 0;
  std::vector<Candidate> candidates_;
  std::vector<double> probs_;
};

}  // namespace edgeinf
