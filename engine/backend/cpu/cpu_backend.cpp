// The CPU backend: the Llama forward pass on kernels/cpu over a thread pool (embeddings, n_layer
// blocks of pre-norm attention and SwiGLU feed-forward with residuals, final norm and output
// projection), with the policies of engine/kv holding their state in host memory.
#include <algorithm>
#include <cstring>
#include <initializer_list>
#include <mutex>
#include <span>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/backend/backend.h"
#include "engine/backend/llama_pass.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/scratch.h"
#include "kernels/cpu/vec.h"

namespace edgeinf {

namespace kc = kernels::cpu;

namespace {

// The pass's steps on kernels/cpu (engine/backend/llama_pass.h); attend(il) runs the policies.
template <typename Attend>
struct CpuOps {
  struct Error {};
  static bool ok(Error) { return true; }
  struct Matmul {
    const WeightView& w;
    const float* bias;
    const float* in;
    float* out;
  };

  const LlamaModel& model;
  kc::ThreadPool& pool;
  std::span<const TokenId> tokens;
  const PassBuffers& b;
  bool per_token;  // single-token matmul arithmetic for every row
  float* logits_out;
  Attend attend_layer;

  Error embed(int64_t n) {
    const kc::VecOps& vec = kc::vec_ops();
    const WeightView& embd = model.token_embd();
    const int64_t n_embd = model.config().n_embd;
    for (int64_t t = 0; t < n; ++t) {
      const auto* row = static_cast<const uint8_t*>(embd.data) + int64_t(tokens[size_t(t)]) * embd.row_bytes;
      vec.dequantize_row(embd.type, row, b.x + t * n_embd, n_embd);
    }
    return {};
  }
  const LayerWeights& layer(int il) const { return model.layer(il); }
  static const float* bias(const float* v) { return v; }
  Error rmsnorm(const float* x, const float* weight, float* out, int64_t n) {
    kc::rmsnorm_forward({x, weight, out, n, model.config().n_embd, model.config().rms_eps}, pool);
    return {};
  }
  Error matmuls(std::initializer_list<Matmul> ms, int64_t n) {
    kernels::MatmulParams ps[3];
    size_t count = 0;
    for (const Matmul& m : ms) ps[count++] = matmul_params(m.w, m.in, m.out, n, m.bias, per_token);
    if (count == 1) {
      kc::matmul_forward(ps[0], pool);
    } else {
      kc::matmul_forward_batch(std::span<const kernels::MatmulParams>(ps, count), pool);
    }
    return {};
  }
  Error attend(int il, int64_t) {
    attend_layer(il);
    return {};
  }
  static Error add(float* x, const float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) x[i] += y[i];
    return {};
  }
  Error swiglu(float* gate, const float* up, int64_t n) {
    const int64_t n_ff = model.config().n_ff;
    kc::swiglu_forward({gate, up, gate, n_ff, n, n_ff}, pool);
    return {};
  }
  Error logits(int64_t first, int64_t n_out) {
    const LlamaConfig& c = model.config();
    kc::rmsnorm_forward({b.x + first * c.n_embd, model.output_norm(), b.xn, n_out, c.n_embd, c.rms_eps}, pool);
    kc::matmul_forward(matmul_params(model.output(), b.xn, logits_out, n_out, nullptr, per_token), pool);
    return {};
  }
};

// Runs the pass over `tokens` with the given per-layer attention, writing the logits of rows
// [first, n) to `logits`.
template <typename Attend>
void run_pass(const LlamaModel& model, kc::ThreadPool& pool, std::span<const TokenId> tokens, const PassBuffers& b,
              bool per_token, int64_t first, float* logits, Attend attend) {
  CpuOps<Attend> ops{model, pool, tokens, b, per_token, logits, std::move(attend)};
  run_llama_pass(ops, model.config(), b, int64_t(tokens.size()), first);
}

// Activations for n tokens of a pass, shared by every context the calling thread runs: it grows to
// the largest batch seen and is then reused, so steady decode allocates nothing and an idle
// context holds none.
PassBuffers forward_scratch(const LlamaConfig& cfg, const AttentionShape& shape, int64_t n) {
  thread_local std::vector<float> x, xn, q, k, v, attn, gate, up;
  auto fit = [](std::vector<float>& b, int64_t size) {
    if (b.size() < size_t(size)) b.resize(size_t(size));
    return b.data();
  };
  const int64_t q_dim = shape.q_dim(), kv_dim = shape.kv_dim();
  return PassBuffers{fit(x, n * cfg.n_embd),  fit(xn, n * std::max<int64_t>(cfg.n_embd, q_dim)),
                     fit(q, n * q_dim),       fit(k, n * kv_dim),
                     fit(v, n * kv_dim),      fit(attn, n * q_dim),
                     fit(gate, n * cfg.n_ff), fit(up, n * cfg.n_ff)};
}

class CpuBackend final : public ModelBackend {
 public:
  CpuBackend(const LlamaModel& model, kc::ThreadPool& pool)
      : model_(model), pool_(pool), shape_(AttentionShape::of(model)) {}

  const char* device() const override { return "cpu"; }
  std::string describe() const override {
    return absl::StrCat(kc::vec_ops().isa, " kernels, ", pool_.n_threads(), " threads");
  }
  const LlamaModel& model() const override { return model_; }
  bool supports(const std::string& policy) const override { return find_kv_policy(policy) != nullptr; }

  StatusOr<std::unique_ptr<KvPolicy>> make_policy(const KvPolicyOptions& options) override {
    return make_kv_policy(options, shape_);
  }

  // Contexts may be made on any thread while another runs a pass on the pool, so the shape is
  // only recorded here; the next pass grows the pool's scratch before it starts.
  void prepare(const KvPolicy& policy) override {
    const KvPolicy::StepShape step = policy.step_shape();
    std::lock_guard<std::mutex> lock(scratch_mu_);
    wanted_.keys = std::max(wanted_.keys, step.keys);
    wanted_.folded = std::max(wanted_.folded, step.folded);
  }

  Status forward(std::span<const TokenId> tokens, KvPolicy& policy, bool all_logits, float* logits) override {
    reserve_scratch();
    const int64_t n = int64_t(tokens.size());
    EDGEINF_RETURN_IF_ERROR(policy.begin_batch(n));
    const PassBuffers b = forward_scratch(model_.config(), shape_, n);
    // The policy rotates Q/K to its positions, keeps what it keeps, and attends. Only the rows
    // whose logits are wanted go through the final norm and output projection.
    run_pass(model_, pool_, tokens, b, false, all_logits ? 0 : n - 1, logits, [&](int il) {
      policy.attend({il, n, b.q, b.k, b.v, b.attn}, pool_);
    });
    policy.end_batch(pool_);
    return absl::OkStatus();
  }

  Status forward_each(std::span<KvPolicy* const> policies, std::span<const TokenId> tokens, float* logits) override {
    reserve_scratch();
    for (KvPolicy* p : policies) EDGEINF_RETURN_IF_ERROR(p->begin_batch(1));
    const int64_t n = int64_t(policies.size());
    const int64_t q_dim = shape_.q_dim(), kv_dim = shape_.kv_dim();
    const PassBuffers b = forward_scratch(model_.config(), shape_, n);
    run_pass(model_, pool_, tokens, b, true, 0, logits, [&](int il) {
      for (int64_t t = 0; t < n; ++t) {
        policies[size_t(t)]->attend({il, 1, b.q + t * q_dim, b.k + t * kv_dim, b.v + t * kv_dim, b.attn + t * q_dim},
                                    pool_);
      }
    });
    for (KvPolicy* p : policies) p->end_batch(pool_);
    return absl::OkStatus();
  }

 private:
  // Grows every pool thread's kernel scratch to the largest shape prepared so far (on the thread
  // that runs passes; once per new largest shape).
  void reserve_scratch() {
    std::lock_guard<std::mutex> lock(scratch_mu_);
    if (wanted_.keys == reserved_.keys && wanted_.folded == reserved_.folded) return;
    const LlamaConfig& c = model_.config();
    kc::ScratchShape s;
    s.keys = wanted_.keys;
    s.heads = c.n_head;
    s.head_dim = c.head_dim;
    s.n_rot = c.n_rot;
    s.n_in = std::max({int64_t(c.n_embd), int64_t(c.n_ff), shape_.q_dim()});
    s.folded = wanted_.folded;
    kc::reserve_scratch(s, pool_);
    reserved_ = wanted_;
  }

  const LlamaModel& model_;
  kc::ThreadPool& pool_;
  AttentionShape shape_;
  std::mutex scratch_mu_;
  KvPolicy::StepShape wanted_, reserved_;  // the largest step shape prepared, and reserved
};

}  // namespace

std::unique_ptr<ModelBackend> make_cpu_backend(const LlamaModel& model, kc::ThreadPool& pool) {
  return std::make_unique<CpuBackend>(model, pool);
}

}  // namespace edgeinf
