// Distillation samples from a teacher-forced run (full attention beside EdgeInfinite's parts), and
// the per-layer fit that turns them into a gate.
#include "engine/calibration/gate_calibration.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "engine/kv/edgeinfinite_policy.h"
#include "kernels/cpu/vec.h"

namespace edgeinf {
namespace {

// SplitMix64: a small seeded generator whose sequence is the same on every platform.
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed) {}
  uint64_t next() {
    uint64_t z = (s_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  uint64_t below(uint64_t n) { return next() % n; }

 private:
  uint64_t s_;
};

// k distinct values of [lo, hi), sorted.
std::vector<int64_t> sample_positions(Rng& rng, int64_t lo, int64_t hi, int64_t k) {
  std::vector<int64_t> all;
  for (int64_t p = lo; p < hi; ++p) all.push_back(p);
  k = std::min<int64_t>(k, int64_t(all.size()));
  for (int64_t i = 0; i < k; ++i) {
    const int64_t j = i + int64_t(rng.below(uint64_t(int64_t(all.size()) - i)));
    std::swap(all[size_t(i)], all[size_t(j)]);
  }
  all.resize(size_t(k));
  std::sort(all.begin(), all.end());
  return all;
}

// Turns a layer's (A_mem, A_loc, A_full) at the sampled positions into GateSamples.
class SampleRecorder {
 public:
  SampleRecorder(const LlamaModel& model, const AttentionShape& s, bool features) : s_(s) {
    const int64_t n_embd = model.config().n_embd;
    wo_.resize(size_t(s.n_layer));
    for (int il = 0; il < s.n_layer; ++il) {
      const WeightView& w = model.layer(il).wo;
      wo_[size_t(il)].resize(size_t(n_embd * s.q_dim()));
      for (int64_t j = 0; j < n_embd; ++j) {
        kernels::cpu::vec_ops().dequantize_row(w.type, static_cast<const uint8_t*>(w.data) + j * w.row_bytes,
                                               wo_[size_t(il)].data() + j * s.q_dim(), s.q_dim());
      }
    }
    n_embd_ = n_embd;
    const int64_t f = features ? 2 * s.q_dim() : 0;
    train_.assign(size_t(s.n_layer), GateSamples(s.n_head, f));
    val_.assign(size_t(s.n_layer), GateSamples(s.n_head, f));
  }

  void begin_sequence(std::vector<int64_t> picks, bool validation) {
    picks_ = std::move(picks);
    validation_ = validation;
  }

  void record(int layer, int64_t pos0, int64_t n_tok, const float* a_mem, const float* a_loc, const float* a_full,
              kernels::cpu::ThreadPool& pool) {
    const auto first = std::lower_bound(picks_.begin(), picks_.end(), pos0);
    const auto last = std::lower_bound(picks_.begin(), picks_.end(), pos0 + n_tok);
    const int64_t m = last - first;
    if (m == 0) return;
    const int n_head = s_.n_head;
    const int64_t q_dim = s_.q_dim(), hd = s_.head_dim, hh = int64_t(n_head) * n_head;
    std::vector<double> c(static_cast<size_t>(m));
    std::vector<float> b(static_cast<size_t>(m * n_head)), gram(static_cast<size_t>(m * hh));
    const float* wo = wo_[size_t(layer)].data();
    pool.run(m, [&](int64_t i) {
      const kernels::cpu::VecOps& vec = kernels::cpu::vec_ops();
      const int64_t t = first[i] - pos0;
      const float* mem = a_mem + t * q_dim;
      const float* loc = a_loc + t * q_dim;
      const float* full = a_full + t * q_dim;
      std::vector<float> e0(static_cast<size_t>(q_dim)), d(static_cast<size_t>(q_dim));
      std::vector<float> u(static_cast<size_t>(n_embd_)), p(static_cast<size_t>(n_head * n_embd_));
      for (int64_t k = 0; k < q_dim; ++k) e0[size_t(k)] = loc[k] - full[k], d[size_t(k)] = mem[k] - loc[k];
      vec.gemm_panel(e0.data(), q_dim, 1, wo, q_dim, n_embd_, q_dim, u.data(), n_embd_);
      for (int h = 0; h < n_head; ++h) {
        vec.gemm_panel(d.data() + h * hd, q_dim, 1, wo + h * hd, q_dim, n_embd_, hd, p.data() + h * n_embd_, n_embd_);
      }
      c[size_t(i)] = vec.dot(u.data(), u.data(), n_embd_);
      for (int h = 0; h < n_head; ++h) {
        b[size_t(i * n_head + h)] = vec.dot(u.data(), p.data() + h * n_embd_, n_embd_);
        for (int k = 0; k <= h; ++k) {
          const float g = vec.dot(p.data() + h * n_embd_, p.data() + k * n_embd_, n_embd_);
          gram[size_t(i * hh + h * n_head + k)] = gram[size_t(i * hh + k * n_head + h)] = g;
        }
      }
    });
    GateSamples& out = (validation_ ? val_ : train_)[size_t(layer)];
    std::vector<float> x(static_cast<size_t>(out.feat_dim));
    for (int64_t i = 0; i < m; ++i) {
      if (out.feat_dim > 0) {
        const int64_t t = first[i] - pos0;
        std::copy(a_mem + t * q_dim, a_mem + (t + 1) * q_dim, x.begin());
        std::copy(a_loc + t * q_dim, a_loc + (t + 1) * q_dim, x.begin() + q_dim);
      }
      out.add(c[size_t(i)], b.data() + i * n_head, gram.data() + i * hh, x.data());
    }
  }

  std::vector<GateSamples>& train() { return train_; }
  std::vector<GateSamples>& val() { return val_; }

 private:
  AttentionShape s_;
  int64_t n_embd_ = 0;
  std::vector<std::vector<float>> wo_;  // per layer W_o as f32 [n_embd, q_dim]
  std::vector<int64_t> picks_;
  bool validation_ = false;
  std::vector<GateSamples> train_, val_;
};

// Full attention (the teacher: its output continues the forward pass) and EdgeInfinite's parts
// on the same pre-RoPE queries, keys and values.
class DistillPolicy final : public KvPolicy {
 public:
  DistillPolicy(const AttentionShape& s, std::unique_ptr<KvPolicy> full, std::unique_ptr<EdgeInfinitePolicy> edge,
                SampleRecorder& recorder)
      : s_(s), full_(std::move(full)), edge_(std::move(edge)), recorder_(recorder) {
    const size_t n = size_t(max_batch());
    q_.resize(n * size_t(s.q_dim()));
    k_.resize(n * size_t(s.kv_dim()));
    loc_.resize(n * size_t(s.q_dim()));
  }

  const char* name() const override { return "distill"; }
  int64_t max_batch() const override { return std::min(full_->max_batch(), edge_->max_batch()); }
  StepShape step_shape() const override {
    const StepShape a = full_->step_shape(), b = edge_->step_shape();
    return {std::max(a.keys, b.keys), std::max(a.folded, b.folded)};
  }
  int64_t capacity() const override { return full_->capacity(); }
  Status begin_batch(int64_t n_tok) override {
    EDGEINF_RETURN_IF_ERROR(full_->begin_batch(n_tok));
    return edge_->begin_batch(n_tok);
  }

  void attend(const LayerAttention& a, kernels::cpu::ThreadPool& pool) override {
    std::copy(a.q, a.q + a.n_tok * s_.q_dim(), q_.begin());
    std::copy(a.k, a.k + a.n_tok * s_.kv_dim(), k_.begin());
    LayerAttention e = a;
    e.q = q_.data();
    e.k = k_.data();
    e.out = loc_.data();
    const bool has_memory = edge_->attend_parts(e, pool);
    full_->attend(a, pool);
    if (has_memory) {
      recorder_.record(a.layer, full_->n_seen(), a.n_tok, edge_->store()->host_memory_read(), loc_.data(), a.out, pool);
    }
  }

  void end_batch(kernels::cpu::ThreadPool& pool) override {
    full_->end_batch(pool);
    edge_->end_batch(pool);
  }
  void reset() override {
    full_->reset();
    edge_->reset();
  }
  int64_t n_seen() const override { return full_->n_seen(); }
  int64_t n_kept() const override { return full_->n_kept(); }
  int64_t n_compressed() const override { return edge_->n_compressed(); }
  size_t state_bytes() const override { return full_->state_bytes() + edge_->state_bytes(); }
  Status save(ByteWriter& w) const override {
    EDGEINF_RETURN_IF_ERROR(full_->save(w));
    return edge_->save(w);
  }
  Status restore(ByteReader& r) override {
    EDGEINF_RETURN_IF_ERROR(full_->restore(r));
    return edge_->restore(r);
  }

 private:
  AttentionShape s_;
  std::unique_ptr<KvPolicy> full_;
  std::unique_ptr<EdgeInfinitePolicy> edge_;
  SampleRecorder& recorder_;
  std::vector<float> q_, k_, loc_;
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

StatusOr<CalibrationSamples> collect_gate_samples(const LlamaModel& model, std::span<const TokenId> tokens,
                                                  const CalibrationOptions& o, kernels::cpu::ThreadPool& pool,
                                                  const CalibrationProgress& progress) {
  const AttentionShape shape = AttentionShape::of(model);
  const GateConfig& g = o.gate;
  const int64_t context = o.context > 0 ? o.context : std::min(8192, shape.n_ctx_train);
  const int64_t tau = int64_t(g.sink) + g.window + g.segment;
  if (o.sequences <= 0 || o.validation_sequences < 0 || o.validation_sequences >= o.sequences ||
      o.samples_per_sequence <= 0 || o.fit.steps <= 0 || o.fit.eval_every <= 0) {
    return absl::InvalidArgumentError(
        "need sequences > validation sequences >= 0, samples per sequence > 0 and steps > 0");
  }
  if (context <= tau || context > shape.n_ctx_train) {
    return absl::InvalidArgumentError(absl::StrCat("the calibration context (", context,
                                                   ") must exceed sink + window + segment (", tau,
                                                   ") and fit the model's trained context (", shape.n_ctx_train, ")"));
  }
  const int64_t n_windows = int64_t(tokens.size()) / context;
  if (n_windows < o.sequences) {
    return absl::InvalidArgumentError(absl::StrCat("the calibration text has ", tokens.size(), " tokens; ", o.sequences,
                                                   " sequences of ", context, " need ",
                                                   int64_t(o.sequences) * context));
  }
  KvPolicyOptions full_opt;
  full_opt.name = "full";
  full_opt.n_ctx = int(context);
  const KvPolicyOptions edge_opt = edgeinfinite_options(g);
  EDGEINF_ASSIGN_OR_RETURN(std::unique_ptr<KvPolicy> full, make_kv_policy(full_opt, shape));
  EDGEINF_RETURN_IF_ERROR(make_kv_policy(edge_opt, shape).status());  // validates S, W, L
  auto edge = std::make_unique<EdgeInfinitePolicy>(shape, edge_opt,
                                                   make_cpu_kv_store(shape, EdgeInfinitePolicy::store_shape(edge_opt)));

  SampleRecorder recorder(model, shape, g.kind == GateKind::kLinear);
  const std::unique_ptr<ModelBackend> cpu = make_cpu_backend(model, pool);
  EDGEINF_ASSIGN_OR_RETURN(
      std::unique_ptr<LlamaContext> ctx,
      LlamaContext::create(*cpu, std::make_unique<DistillPolicy>(shape, std::move(full), std::move(edge), recorder),
                           g.segment));
  Rng rng(o.seed);
  std::vector<int64_t> order(static_cast<size_t>(n_windows));
  for (int64_t i = 0; i < n_windows; ++i) order[size_t(i)] = i;
  for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[size_t(rng.below(i))]);

  const int64_t total = int64_t(o.sequences) * context;
  for (int si = 0; si < o.sequences; ++si) {
    const std::span<const TokenId> seq = tokens.subspan(size_t(order[size_t(si)] * context), size_t(context));
    ctx->reset();
    recorder.begin_sequence(sample_positions(rng, tau, context, o.samples_per_sequence),
                            si >= o.sequences - o.validation_sequences);
    for (int64_t b = 0; b < context; b += ctx->n_batch()) {
      const int64_t n = std::min<int64_t>(ctx->n_batch(), context - b);
      EDGEINF_RETURN_IF_ERROR(ctx->eval(seq.subspan(size_t(b), size_t(n))).status());
      if (progress) progress("collect", si * context + b + n, total);
    }
  }
  ctx.reset();
  return CalibrationSamples{std::move(recorder.train()), std::move(recorder.val())};
}

StatusOr<std::unique_ptr<MemoryGate>> calibrate_gate(const LlamaModel& model, std::span<const TokenId> tokens,
                                                     const std::string& text_hash, const CalibrationOptions& o,
                                                     kernels::cpu::ThreadPool& pool,
                                                     const CalibrationProgress& progress, CalibrationReport* report) {
  const AttentionShape shape = AttentionShape::of(model);
  const GateConfig& g = o.gate;
  const auto t_collect = std::chrono::steady_clock::now();
  EDGEINF_ASSIGN_OR_RETURN(CalibrationSamples samples, collect_gate_samples(model, tokens, o, pool, progress));
  CalibrationReport rep;
  rep.collect_s = seconds_since(t_collect);

  const auto t_fit = std::chrono::steady_clock::now();
  GateConfig config = g;
  config.model_fingerprint = model.gguf().fingerprint();
  config.calibration_hash = text_hash;
  auto gate = std::make_unique<MemoryGate>(config, shape, o.fit.init_bias);
  rep.layers.resize(size_t(shape.n_layer));
  rep.mean_val = rep.mean_val_scalar = 0;
  for (int il = 0; il < shape.n_layer; ++il) {
    GateSamples& train = samples.train[size_t(il)];
    GateSamples& val = samples.val[size_t(il)];
    if (train.size() == 0) return absl::InternalError(absl::StrCat("no calibration samples for layer ", il));
    CalibrationLayerReport& lr = rep.layers[size_t(il)];
    lr.n_train = train.size();
    lr.n_val = val.size();
    lr.fit =
        fit_gate_layer(train, val.size() > 0 ? &val : nullptr, g.kind, gate->bias(il), gate->weight(il), o.fit, pool);
    rep.mean_val += lr.fit.val / shape.n_layer;
    rep.mean_val_scalar += lr.fit.val_scalar / shape.n_layer;
    train = GateSamples();
    val = GateSamples();
    if (progress) progress("fit", il + 1, shape.n_layer);
  }
  rep.fit_s = seconds_since(t_fit);
  if (report != nullptr) *report = std::move(rep);
  return gate;
}

}  // namespace edgeinf
