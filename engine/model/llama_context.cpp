// Llama forward pass on the CPU kernels: embeddings, n_layer blocks of pre-norm attention and
// SwiGLU feed-forward with residuals, final norm and output projection.
#include "engine/model/llama_context.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/vec.h"

namespace edgeinf {

namespace kc = kernels::cpu;

namespace {

// Activation buffers of one forward pass, each [n_tok, width].
struct Activations {
  float *x, *xn, *q, *k, *v, *attn, *gate, *up;
};

// Embeds the tokens into a.x and runs every layer; attend(layer, a) does each layer's attention
// from a.q/a.k/a.v (pre-RoPE) into a.attn. per_token: single-token matmul arithmetic per row.
template <typename Attend>
void run_layers(const LlamaModel& model, kc::ThreadPool& pool, std::span<const TokenId> tokens, const Activations& a,
                bool per_token, Attend&& attend) {
  const LlamaConfig& c = model.config();
  const kc::VecOps& vec = kc::vec_ops();
  const int64_t n = int64_t(tokens.size());
  const int64_t n_embd = c.n_embd;
  const WeightView& embd = model.token_embd();
  for (int64_t t = 0; t < n; ++t) {
    const auto* row = static_cast<const uint8_t*>(embd.data) + int64_t(tokens[size_t(t)]) * embd.row_bytes;
    vec.dequantize_row(embd.type, row, a.x + t * n_embd, n_embd);
  }
  for (int il = 0; il < c.n_layer; ++il) {
    const LayerWeights& l = model.layer(il);
    kc::rmsnorm_forward({a.x, l.attn_norm, a.xn, n, n_embd, c.rms_eps}, pool);
    const kernels::MatmulParams qkv[] = {matmul_params(l.wq, a.xn, a.q, n, l.bq, per_token),
                                         matmul_params(l.wk, a.xn, a.k, n, l.bk, per_token),
                                         matmul_params(l.wv, a.xn, a.v, n, l.bv, per_token)};
    kc::matmul_forward_batch(qkv, pool);
    attend(il);
    // x += Wo . attn ; x += W_down . (silu(W_gate . norm(x)) * W_up . norm(x))
    kc::matmul_forward(matmul_params(l.wo, a.attn, a.xn, n, nullptr, per_token), pool);
    for (int64_t i = 0; i < n * n_embd; ++i) a.x[i] += a.xn[i];
    kc::rmsnorm_forward({a.x, l.ffn_norm, a.xn, n, n_embd, c.rms_eps}, pool);
    const kernels::MatmulParams gate_up[] = {matmul_params(l.w_gate, a.xn, a.gate, n, nullptr, per_token),
                                             matmul_params(l.w_up, a.xn, a.up, n, nullptr, per_token)};
    kc::matmul_forward_batch(gate_up, pool);
    kc::swiglu_forward({a.gate, a.up, a.gate, c.n_ff, n, c.n_ff}, pool);
    kc::matmul_forward(matmul_params(l.w_down, a.gate, a.xn, n, nullptr, per_token), pool);
    for (int64_t i = 0; i < n * n_embd; ++i) a.x[i] += a.xn[i];
  }
}

// Final norm and output projection of rows [first, first + n_out) of x.
void output_logits(const LlamaModel& model, kc::ThreadPool& pool, const float* x, float* xn, int64_t first,
                   int64_t n_out, float* logits, bool per_token) {
  const LlamaConfig& c = model.config();
  kc::rmsnorm_forward({x + first * c.n_embd, model.output_norm(), xn, n_out, c.n_embd, c.rms_eps}, pool);
  kc::matmul_forward(matmul_params(model.output(), xn, logits, n_out, nullptr, per_token), pool);
}

// Activations for n tokens of a pass, shared by every context the calling thread runs: it grows to
// the largest batch seen and is then reused, so steady decode allocates nothing and an idle
// context holds none.
Activations forward_scratch(const LlamaConfig& cfg, const AttentionShape& shape, int64_t n) {
  thread_local std::vector<float> x, xn, q, k, v, attn, gate, up;
  auto fit = [](std::vector<float>& b, int64_t size) {
    if (b.size() < size_t(size)) b.resize(size_t(size));
    return b.data();
  };
  const int64_t q_dim = shape.q_dim(), kv_dim = shape.kv_dim();
  return Activations{fit(x, n * cfg.n_embd), fit(xn, n * std::max<int64_t>(cfg.n_embd, q_dim)), fit(q, n * q_dim),
                     fit(k, n * kv_dim),      fit(v, n * kv_dim),  fit(attn, n * q_dim),
                     fit(gate, n * cfg.n_ff), fit(up, n * cfg.n_ff)};
}

}  // namespace

StatusOr<std::unique_ptr<LlamaContext>> LlamaContext::create(const LlamaModel& model, kc::ThreadPool& pool,
                                                             const LlamaContextOptions& options) {
  if (options.n_batch <= 0) return absl::InvalidArgumentError("batch size must be positive");
  // A backend's make_policy refuses a policy it does not run, saying so.
  EDGEINF_ASSIGN_OR_RETURN(std::unique_ptr<KvPolicy> policy,
                           options.backend != nullptr ? options.backend->make_policy(options.kv)
                                                      : make_kv_policy(options.kv, AttentionShape::of(model)));
  return make(model, pool, std::move(policy), options.n_batch, options.backend);
}

StatusOr<std::unique_ptr<LlamaContext>> LlamaContext::create(const LlamaModel& model, kc::ThreadPool& pool,
                                                             std::unique_ptr<KvPolicy> policy, int n_batch) {
  return make(model, pool, std::move(policy), n_batch, nullptr);
}

StatusOr<std::unique_ptr<LlamaContext>> LlamaContext::make(const LlamaModel& model, kc::ThreadPool& pool,
                                                           std::unique_ptr<KvPolicy> policy, int n_batch,
                                                           ModelBackend* backend) {
  if (n_batch <= 0) return absl::InvalidArgumentError("batch size must be positive");
  if (policy == nullptr) return absl::InvalidArgumentError("no KV policy");
  const int batch = int(std::min<int64_t>(n_batch, policy->max_batch()));
  return std::unique_ptr<LlamaContext>(new LlamaContext(model, pool, std::move(policy), batch, backend));
}

LlamaContext::LlamaContext(const LlamaModel& model, kc::ThreadPool& pool, std::unique_ptr<KvPolicy> policy,
                           int n_batch, ModelBackend* backend)
    : model_(model),
      pool_(pool),
      policy_(std::move(policy)),
      backend_(backend),
      shape_(AttentionShape::of(model)),
      n_batch_(n_batch) {
  // Only the last logits row lives with the context (a caller reads it until the next eval); the
  // activations of a pass are scratch shared by every context the thread runs (forward_scratch).
  logits_.resize(size_t(model.config().n_vocab));
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
    return absl::InvalidArgumentError(absl::StrCat("at most ", n_batch_, " tokens per call when all logits are wanted"));
  }
  EDGEINF_RETURN_IF_ERROR(forward_batch(tokens, true));
  return std::span<const float>(logits_.data(), tokens.size() * size_t(model_.config().n_vocab));
}

Status LlamaContext::forward_batch(std::span<const TokenId> tokens, bool all_logits) {
  const int64_t n = int64_t(tokens.size());
  const size_t n_logits = size_t(all_logits ? n : 1) * size_t(model_.config().n_vocab);
  if (logits_.size() < n_logits) logits_.resize(n_logits);
  if (backend_ != nullptr) return backend_->forward(tokens, *policy_, all_logits, logits_.data());
  EDGEINF_RETURN_IF_ERROR(policy_->begin_batch(n));
  const Activations a = forward_scratch(model_.config(), shape_, n);
  // The policy rotates Q/K to its positions, keeps what it keeps, and attends.
  run_layers(model_, pool_, tokens, a, false,
             [&](int il) { policy_->attend({il, n, a.q, a.k, a.v, a.attn}, pool_); });
  policy_->end_batch(pool_);
  // Only the rows whose logits are wanted go through the final norm and output projection.
  const int64_t first = all_logits ? 0 : n - 1;
  output_logits(model_, pool_, a.x, a.xn, first, n - first, logits_.data(), false);
  return absl::OkStatus();
}

StatusOr<std::vector<std::span<const float>>> LlamaContext::eval_each(std::span<LlamaContext* const> contexts,
                                                                       std::span<const TokenId> tokens) {
  if (contexts.empty() || contexts.size() != tokens.size()) {
    return absl::InvalidArgumentError("eval_each needs one token per context");
  }
  const LlamaModel& model = contexts[0]->model_;
  kc::ThreadPool& pool = contexts[0]->pool_;
  for (size_t i = 0; i < contexts.size(); ++i) {
    LlamaContext* c = contexts[i];
    if (&c->model_ != &model || &c->pool_ != &pool) {
      return absl::InvalidArgumentError("eval_each: the contexts must share one model and thread pool");
    }
    for (size_t j = 0; j < i; ++j) {
      if (contexts[j] == c) return absl::InvalidArgumentError("eval_each: a context appears twice");
    }
    EDGEINF_RETURN_IF_ERROR(c->check_tokens(tokens.subspan(i, 1)));
  }
  // One pass per backend (the CPU's is nullptr), in order of first appearance.
  std::vector<ModelBackend*> backends;
  for (LlamaContext* c : contexts) {
    if (std::find(backends.begin(), backends.end(), c->backend_) == backends.end()) backends.push_back(c->backend_);
  }
  const int64_t n_vocab = model.config().n_vocab;
  for (ModelBackend* backend : backends) {
    std::vector<LlamaContext*> group;
    std::vector<TokenId> group_tokens;
    for (size_t i = 0; i < contexts.size(); ++i) {
      if (contexts[i]->backend_ == backend) group.push_back(contexts[i]), group_tokens.push_back(tokens[i]);
    }
    if (backend == nullptr) {
      EDGEINF_RETURN_IF_ERROR(eval_each_cpu(group, group_tokens));
      continue;
    }
    std::vector<KvPolicy*> policies;
    for (LlamaContext* c : group) policies.push_back(c->policy_.get());
    thread_local std::vector<float> logits;
    if (logits.size() < group.size() * size_t(n_vocab)) logits.resize(group.size() * size_t(n_vocab));
    EDGEINF_RETURN_IF_ERROR(backend->forward_each(policies, group_tokens, logits.data()));
    for (size_t t = 0; t < group.size(); ++t) {
      std::copy(logits.begin() + int64_t(t) * n_vocab, logits.begin() + int64_t(t + 1) * n_vocab,
                group[t]->logits_.begin());
    }
  }
  std::vector<std::span<const float>> out;
  for (LlamaContext* c : contexts) out.emplace_back(c->logits_.data(), size_t(n_vocab));
  return out;
}

Status LlamaContext::eval_each_cpu(std::span<LlamaContext* const> contexts, std::span<const TokenId> tokens) {
  const LlamaModel& model = contexts[0]->model_;
  kc::ThreadPool& pool = contexts[0]->pool_;
  for (LlamaContext* c : contexts) EDGEINF_RETURN_IF_ERROR(c->policy_->begin_batch(1));

  const LlamaConfig& cfg = model.config();
  const int64_t n = int64_t(contexts.size());
  const AttentionShape& shape = contexts[0]->shape_;
  const int64_t q_dim = shape.q_dim(), kv_dim = shape.kv_dim();
  const Activations a = forward_scratch(cfg, shape, n);
  thread_local std::vector<float> logits;
  if (logits.size() < size_t(n * cfg.n_vocab)) logits.resize(size_t(n * cfg.n_vocab));
  run_layers(model, pool, tokens, a, true, [&](int il) {
    for (int64_t t = 0; t < n; ++t) {
      contexts[size_t(t)]->policy_->attend(
          {il, 1, a.q + t * q_dim, a.k + t * kv_dim, a.v + t * kv_dim, a.attn + t * q_dim}, pool);
    }
  });
  for (LlamaContext* c : contexts) c->policy_->end_batch(pool);
  output_logits(model, pool, a.x, a.xn, 0, n, logits.data(), true);
  for (int64_t t = 0; t < n; ++t) {
    LlamaContext* c = contexts[size_t(t)];
    std::copy(logits.begin() + t * cfg.n_vocab, logits.begin() + (t + 1) * cfg.n_vocab, c->logits_.begin());
  }
  return absl::OkStatus();
}

}  // namespace edgeinf
