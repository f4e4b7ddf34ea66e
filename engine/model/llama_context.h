// The forward pass of a LlamaModel with a full KV cache: prefill in batches, decode one token at a time.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "engine/model/llama_model.h"
#include "engine/util/status.h"
#include "kernels/cpu/thread_pool.h"

namespace edgeinf {

using TokenId = int32_t;

struct LlamaContextOptions {
  int n_ctx = 0;      // KV capacity in tokens; 0 = the model's training context
  int n_batch = 256;  // tokens per forward batch (bounds activation memory)
};

class LlamaContext {
 public:
  // Allocates the KV cache [n_layer][n_ctx, n_kv_head * head_dim] and activation buffers up front.
  LlamaContext(const LlamaModel& model, kernels::cpu::ThreadPool& pool, const LlamaContextOptions& options);

  // Appends tokens at positions n_past()..; returns logits of the last token ([n_vocab]).
  // Fails with OutOfRange when the KV cache would overflow, InvalidArgument on a bad token id.
  StatusOr<std::span<const float>> eval(std::span<const TokenId> tokens);
  // Appends at most n_batch tokens and returns the logits of every one ([n_tokens, n_vocab]).
  StatusOr<std::span<const float>> eval_all_logits(std::span<const TokenId> tokens);

  int n_past() const { return n_past_; }
  int n_ctx() const { return n_ctx_; }
  int n_batch() const { return n_batch_; }
  // Forgets all tokens (the cache is reused).
  void reset() { n_past_ = 0; }
  // Bytes held by the KV cache and activation buffers.
  size_t state_bytes() const;

 private:
  Status check_tokens(std::span<const TokenId> tokens) const;
  // Runs one batch; writes logits of the last token or of all tokens into logits_.
  void forward_batch(std::span<const TokenId> tokens, bool all_logits);

  const LlamaModel& model_;
  kernels::cpu::ThreadPool& pool_;
  int n_ctx_ = 0;
  int n_batch_ = 0;
  int n_past_ = 0;
  std::vector<std::vector<float>> k_cache_;  // per layer [n_ctx, n_kv_head * head_dim]
  std::vector<std::vector<float>> v_cache_;
  // Activations, each [n_batch, width].
  std::vector<float> x_, xn_, q_, attn_, gate_, up_;
  std::vector<int32_t> positions_;
  std::vector<float> logits_;  // [n_batch or 1, n_vocab]
};

}  // namespace edgeinf
