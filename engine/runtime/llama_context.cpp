// A session's forward pass over its backend: batching, token checks and the logits rows.
#include "engine/runtime/llama_context.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace edgeinf {

StatusOr<std::unique_ptr<LlamaContext>> LlamaContext::create(ModelBackend& backend,
                                                             const LlamaContextOptions& options) {
  if (options.n_batch <= 0) return absl::InvalidArgumentError("batch size must be positive");
  // The backend refuses a policy it does not run, saying so.
  EDGEINF_ASSIGN_OR_RETURN(std::unique_ptr<KvPolicy> policy, backend.make_policy(options.kv));
  return create(backend, std::move(policy), options.n_batch);
}

StatusOr<std::unique_ptr<LlamaContext>> LlamaContext::create(ModelBackend& backend, std::unique_ptr<KvPolicy> policy,
                                                             int n_batch) {
  if (n_batch <= 0) return absl::InvalidArgumentError("batch size must be positive");
  if (policy == nullptr) return absl::InvalidArgumentError("no KV policy");
  const int batch = int(std::min<int64_t>(n_batch, policy->max_batch()));
  backend.prepare(*policy);
  return std::unique_ptr<LlamaContext>(new LlamaContext(backend, std::move(policy), batch));
}

LlamaContext::LlamaContext(ModelBackend& backend, std::unique_ptr<KvPolicy> policy, int n_batch)
    : backend_(backend), model_(backend.model()), policy_(std::move(policy)), n_batch_(n_batch) {
  // Only the last logits row lives with the context (a caller reads it until the next eval); the
  // activations of a pass belong to the backend.
  logits_.resize(size_t(model_.config().n_vocab));
}

size_t LlamaContext::state_bytes() const { return policy_->state_bytes() + logits_.capacity() * sizeof(float); }

size_t LlamaContext::max_state_bytes() const {
  return policy_->max_state_bytes() + size_t(model_.config().n_vocab) * sizeof(float);
}

Status LlamaContext::check_tokens(std::span<const TokenId> tokens) const {
  if (tokens.empty()) return absl::InvalidArgumentError("no tokens to evaluate");
  if (capacity() - n_past() < int64_t(tokens.size())) {
    return absl::OutOfRangeError(absl::StrCat("context is full: ", n_past(), " + ", tokens.size(),
                                              " tokens exceed the context size of ", capacity()));
  }
  const int n_vocab = model_.config().n_vocab;
  for (TokenId t : tokens) {
    if (t < 0 || t >= n_vocab) {
      return absl::InvalidArgumentError(absl::StrCat("token id ", t, " is outside the vocabulary of ", n_vocab));
    }
  }
  return absl::OkStatus();
}

StatusOr<std::span<const float>> LlamaContext::eval(std::span<const TokenId> tokens) {
  EDGEINF_RETURN_IF_ERROR(check_tokens(tokens));
  for (size_t begin = 0; begin < tokens.size(); begin += size_t(n_batch_)) {
    const size_t n = std::min(size_t(n_batch_), tokens.size() - begin);
    EDGEINF_RETURN_IF_ERROR(forward_batch(tokens.subspan(begin, n), false));
  }
  return std::span<const float>(logits_.data(), size_t(model_.config().n_vocab));
}

StatusOr<std::span<const float>> LlamaContext::eval_all_logits(std::span<const TokenId> tokens) {
  EDGEINF_RETURN_IF_ERROR(check_tokens(tokens));
  if (tokens.size() > size_t(n_batch_)) {
    return absl::InvalidArgumentError(
        absl::StrCat("at most ", n_batch_, " tokens per call when all logits are wanted"));
  }
  EDGEINF_RETURN_IF_ERROR(forward_batch(tokens, true));
  return std::span<const float>(logits_.data(), tokens.size() * size_t(model_.config().n_vocab));
}

Status LlamaContext::forward_batch(std::span<const TokenId> tokens, bool all_logits) {
  const size_t n_logits = (all_logits ? tokens.size() : 1) * size_t(model_.config().n_vocab);
  if (logits_.size() < n_logits) logits_.resize(n_logits);
  return backend_.forward(tokens, *policy_, all_logits, logits_.data());
}

Status LlamaContext::eval_each(std::span<LlamaContext* const> contexts, std::span<const TokenId> tokens) {
  if (contexts.empty() || contexts.size() != tokens.size()) {
    return absl::InvalidArgumentError("eval_each needs one token per context");
  }
  const LlamaModel& model = contexts[0]->model_;
  for (size_t i = 0; i < contexts.size(); ++i) {
    LlamaContext* c = contexts[i];
    if (&c->model_ != &model) return absl::InvalidArgumentError("eval_each: the contexts must share one model");
    for (size_t j = 0; j < i; ++j) {
      if (contexts[j] == c) return absl::InvalidArgumentError("eval_each: a context appears twice");
    }
    EDGEINF_RETURN_IF_ERROR(c->check_tokens(tokens.subspan(i, 1)));
  }
  // One pass per backend, in order of first appearance; the groups are built in the calling
  // thread's buffers, which keep their size from step to step.
  thread_local std::vector<ModelBackend*> backends;
  thread_local std::vector<LlamaContext*> group;
  thread_local std::vector<KvPolicy*> policies;
  thread_local std::vector<TokenId> group_tokens;
  thread_local std::vector<float> logits;
  backends.clear();
  for (LlamaContext* c : contexts) {
    if (std::find(backends.begin(), backends.end(), &c->backend_) == backends.end()) backends.push_back(&c->backend_);
  }
  const int64_t n_vocab = model.config().n_vocab;
  for (ModelBackend* backend : backends) {
    group.clear(), policies.clear(), group_tokens.clear();
    for (size_t i = 0; i < contexts.size(); ++i) {
      if (&contexts[i]->backend_ != backend) continue;
      group.push_back(contexts[i]);
      policies.push_back(contexts[i]->policy_.get());
      group_tokens.push_back(tokens[i]);
    }
    if (logits.size() < group.size() * size_t(n_vocab)) logits.resize(group.size() * size_t(n_vocab));
    EDGEINF_RETURN_IF_ERROR(backend->forward_each(policies, group_tokens, logits.data()));
    for (size_t t = 0; t < group.size(); ++t) {
      std::copy(logits.begin() + int64_t(t) * n_vocab, logits.begin() + int64_t(t + 1) * n_vocab,
                group[t]->logits_.begin());
    }
  }
  return absl::OkStatus();
}

}  // namespace edgeinf
