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

kernels::MatmulParams matmul_params(const WeightView& w, const float* x, float* y, int64_t n_tok, const float* bias) {
  kernels::MatmulParams p;
  p.w = w.data;
  p.w_type = w.type;
  p.w_row_bytes = w.row_bytes;
  p.x = x;
  p.x_stride = w.n_in;
  p.y = y;
  p.y_stride = w.n_out;
  p.bias = bias;
  p.n_tok = n_tok;
  p.n_in = w.n_in;
  p.n_out = w.n_out;
  return p;
}

}  // namespace

LlamaContext::LlamaContext(const LlamaModel& model, kc::ThreadPool& pool, const LlamaContextOptions& options)
    : model_(model), pool_(pool) {
  const LlamaConfig& c = model.config();
  n_ctx_ = options.n_ctx > 0 ? options.n_ctx : c.n_ctx_train;
  n_batch_ = std::max(1, std::min(options.n_batch, n_ctx_));
  const size_t kv_dim = size_t(c.n_kv_head) * size_t(c.head_dim);
  const size_t q_dim = size_t(c.n_head) * size_t(c.head_dim);
  k_cache_.assign(size_t(c.n_layer), std::vector<float>(size_t(n_ctx_) * kv_dim));
  v_cache_.assign(size_t(c.n_layer), std::vector<float>(size_t(n_ctx_) * kv_dim));
  const size_t b = size_t(n_batch_);
  x_.resize(b * size_t(c.n_embd));
  xn_.resize(b * std::max(size_t(c.n_embd), q_dim));
  q_.resize(b * q_dim);
  attn_.resize(b * q_dim);
  gate_.resize(b * size_t(c.n_ff));
  up_.resize(b * size_t(c.n_ff));
  positions_.resize(b);
  logits_.resize(b * size_t(c.n_vocab));
}

size_t LlamaContext::state_bytes() const {
  size_t bytes = 0;
  for (const auto& k : k_cache_) bytes += k.size() * sizeof(float);
  for (const auto& v : v_cache_) bytes += v.size() * sizeof(float);
  for (const auto* buf : {&x_, &xn_, &q_, &attn_, &gate_, &up_, &logits_}) bytes += buf->size() * sizeof(float);
  return bytes;
}

Status LlamaContext::check_tokens(std::span<const TokenId> tokens) const {
  if (tokens.empty()) return absl::InvalidArgumentError("no tokens to evaluate");
  if (int64_t(n_past_) + int64_t(tokens.size()) > n_ctx_) {
    return absl::OutOfRangeError(absl::StrCat("context is full: ", n_past_, " + ", tokens.size(),
                                              " tokens exceed the context size of ", n_ctx_));
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
    forward_batch(tokens.subspan(begin, n), false);
  }
  return std::span<const float>(logits_.data(), size_t(model_.config().n_vocab));
}

StatusOr<std::span<const float>> LlamaContext::eval_all_logits(std::span<const TokenId> tokens) {
  EDGEINF_RETURN_IF_ERROR(check_tokens(tokens));
  if (tokens.size() > size_t(n_batch_)) {
    return absl::InvalidArgumentError(absl::StrCat("at most ", n_batch_, " tokens per call when all logits are wanted"));
  }
  forward_batch(tokens, true);
  return std::span<const float>(logits_.data(), tokens.size() * size_t(model_.config().n_vocab));
}

void LlamaContext::forward_batch(std::span<const TokenId> tokens, bool all_logits) {
  const LlamaConfig& c = model_.config();
  const kc::VecOps& vec = kc::vec_ops();
  const int64_t n = int64_t(tokens.size());
  const int64_t n_embd = c.n_embd;
  const int64_t q_dim = int64_t(c.n_head) * c.head_dim;
  const int64_t kv_dim = int64_t(c.n_kv_head) * c.head_dim;

  const WeightView& embd = model_.token_embd();
  for (int64_t t = 0; t < n; ++t) {
    const auto* row = static_cast<const uint8_t*>(embd.data) + int64_t(tokens[size_t(t)]) * embd.row_bytes;
    vec.dequantize_row(embd.type, row, x_.data() + t * n_embd, n_embd);
    positions_[size_t(t)] = n_past_ + int32_t(t);
  }

  for (int il = 0; il < c.n_layer; ++il) {
    const LayerWeights& l = model_.layer(il);
    float* k_cache = k_cache_[size_t(il)].data();
    float* v_cache = v_cache_[size_t(il)].data();
    float* k_new = k_cache + int64_t(n_past_) * kv_dim;
    float* v_new = v_cache + int64_t(n_past_) * kv_dim;

    kc::rmsnorm_forward({x_.data(), l.attn_norm, xn_.data(), n, n_embd, c.rms_eps}, pool_);
    const kernels::MatmulParams qkv[] = {matmul_params(l.wq, xn_.data(), q_.data(), n, l.bq),
                                         matmul_params(l.wk, xn_.data(), k_new, n, l.bk),
                                         matmul_params(l.wv, xn_.data(), v_new, n, l.bv)};
    kc::matmul_forward_batch(qkv, pool_);

    kernels::RopeParams rope;
    rope.positions = positions_.data();
    rope.n_tok = n;
    rope.head_dim = c.head_dim;
    rope.n_rot = c.n_rot;
    rope.freq_base = c.rope_base;
    rope.freq_scale = c.rope_freq_scale;
    rope.freq_factors = model_.rope_freq_factors();
    rope.neox = c.rope_neox;
    rope.x = q_.data();
    rope.row_stride = q_dim;
    rope.n_head = c.n_head;
    kc::rope_forward(rope, pool_);
    rope.x = k_new;
    rope.row_stride = kv_dim;
    rope.n_head = c.n_kv_head;
    kc::rope_forward(rope, pool_);

    kernels::AttentionParams att;
    att.q = q_.data();
    att.q_stride = q_dim;
    att.k = k_cache;
    att.v = v_cache;
    att.kv_stride = kv_dim;
    att.out = attn_.data();
    att.out_stride = q_dim;
    att.n_tok = n;
    att.n_kv = n_past_ + n;
    att.causal_base = n_past_;
    att.n_head = c.n_head;
    att.n_kv_head = c.n_kv_head;
    att.head_dim = c.head_dim;
    att.scale = 1.0f / std::sqrt(float(c.head_dim));
    kc::attention_forward(att, pool_);

    // x += Wo . attn ; x += W_down . (silu(W_gate . norm(x)) * W_up . norm(x))
    kc::matmul_forward(matmul_params(l.wo, attn_.data(), xn_.data(), n, nullptr), pool_);
    for (int64_t i = 0; i < n * n_embd; ++i) x_[size_t(i)] += xn_[size_t(i)];
    kc::rmsnorm_forward({x_.data(), l.ffn_norm, xn_.data(), n, n_embd, c.rms_eps}, pool_);
    const kernels::MatmulParams gate_up[] = {matmul_params(l.w_gate, xn_.data(), gate_.data(), n, nullptr),
                                             matmul_params(l.w_up, xn_.data(), up_.data(), n, nullptr)};
    kc::matmul_forward_batch(gate_up, pool_);
    kc::swiglu_forward({gate_.data(), up_.data(), gate_.data(), c.n_ff, n, c.n_ff}, pool_);
    kc::matmul_forward(matmul_params(l.w_down, gate_.data(), xn_.data(), n, nullptr), pool_);
    for (int64_t i = 0; i < n * n_embd; ++i) x_[size_t(i)] += xn_[size_t(i)];
  }

  // Only the rows whose logits are wanted go through the final norm and output projection.
  const int64_t first = all_logits ? 0 : n - 1;
  const int64_t n_out = n - first;
  kc::rmsnorm_forward({x_.data() + first * n_embd, model_.output_norm(), xn_.data(), n_out, n_embd, c.rms_eps}, pool_);
  kc::matmul_forward(matmul_params(model_.output(), xn_.data(), logits_.data(), n_out, nullptr), pool_);
  n_past_ += int(n);
}

}  // namespace edgeinf
