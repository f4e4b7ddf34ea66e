// A session's forward pass: a LlamaModel over a KV policy on one backend (engine/backend), prefill
// in batches, decode one token at a time. The policy (engine/kv) owns the attention state, the
// backend runs the pass; this class keeps the last logits and checks what it is fed.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "engine/backend/backend.h"
#include "engine/kv/kv_policy.h"
#include "engine/model/llama_model.h"
#include "engine/util/status.h"

namespace edgeinf {

struct LlamaContextOptions {
  KvPolicyOptions kv;  // which policy and its shape (default: full KV at the model's context)
  int n_batch = 256;   // tokens per forward batch, capped by the policy's segment
};

class LlamaContext {
 public:
  // Creates the KV policy on the backend (its arrays grow with the tokens it holds; see
  // KvPolicy::state_bytes). InvalidArgument for a policy the backend does not run.
  static StatusOr<std::unique_ptr<LlamaContext>> create(ModelBackend& backend, const LlamaContextOptions& options);
  // The same over a policy the caller made for that backend (gate calibration wraps the policies
  // it compares).
  static StatusOr<std::unique_ptr<LlamaContext>> create(ModelBackend& backend, std::unique_ptr<KvPolicy> policy,
                                                        int n_batch);

  // Appends tokens; returns logits of the last one ([n_vocab]). OutOfRange when a bounded-capacity
  // policy is full, InvalidArgument on a bad token id; the state is unchanged on error.
  StatusOr<std::span<const float>> eval(std::span<const TokenId> tokens);
  // Appends at most n_batch() tokens and returns the logits of every one ([n_tokens, n_vocab]).
  StatusOr<std::span<const float>> eval_all_logits(std::span<const TokenId> tokens);

  // Appends one token to each of several contexts of the same model in one forward pass per
  // backend (the weights are read once for all of them; each context's policy attends over its own
  // state); each context's logits() are then what eval() would have returned. The contexts are
  // unchanged on error (a device error resets the contexts on that device). Allocates nothing
  // once the calling thread has run a group of that size.
  static Status eval_each(std::span<LlamaContext* const> contexts, std::span<const TokenId> tokens);
  // The logits of the last token evaluated ([n_vocab]).
  std::span<const float> logits() const { return {logits_.data(), size_t(model_.config().n_vocab)}; }

  int64_t n_past() const { return policy_->n_seen(); }
  // Tokens the context can still take in total (unbounded for sink/window policies).
  int64_t capacity() const { return policy_->capacity(); }
  int n_batch() const { return n_batch_; }
  KvPolicy& policy() { return *policy_; }
  const KvPolicy& policy() const { return *policy_; }
  // Forgets all tokens (buffers are reused).
  void reset() { policy_->reset(); }
  // Bytes the context holds now: its attention state and its logits (host buffers only, on a
  // device); and the most they can grow to (the policy's bound and one logits row).
  size_t state_bytes() const;
  size_t max_state_bytes() const;
  // The backend the pass runs on.
  ModelBackend& backend() const { return backend_; }

 private:
  LlamaContext(ModelBackend& backend, std::unique_ptr<KvPolicy> policy, int n_batch);
  Status check_tokens(std::span<const TokenId> tokens) const;
  // Runs one batch; writes logits of the last token or of all tokens into logits_.
  Status forward_batch(std::span<const TokenId> tokens, bool all_logits);

  ModelBackend& backend_;
  const LlamaModel& model_;
  std::unique_ptr<KvPolicy> policy_;
  int n_batch_ = 0;
  std::vector<float> logits_;  // [n_vocab], or [n_tokens, n_vocab] after eval_all_logits
};

}  // namespace edgeinf
