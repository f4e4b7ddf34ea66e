// The gate's next-token loss through the frozen model, and its gradient; see lm_gate_training.h.
#include "engine/calibration/lm_gate_training.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <random>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "engine/backend/llama_pass.h"
#include "engine/kv/kv_store.h"
#include "engine/util/atomic_file.h"
#include "engine/util/crc32c.h"
#include "kernels/common/linear_memory.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/vec.h"

namespace edgeinf {

namespace kc = kernels::cpu;

GateGradient::GateGradient(const MemoryGate& gate) {
  for (int il = 0; il < gate.n_layer(); ++il) {
    bias.emplace_back(gate.bias(il).size(), 0.0f);
    weight.emplace_back(gate.weight(il).size(), 0.0f);
    query.emplace_back(gate.query(il).size(), 0.0f);
  }
}

void GateGradient::zero() {
  for (auto* group : {&bias, &weight, &query}) {
    for (auto& a : *group) std::fill(a.begin(), a.end(), 0.0f);
  }
}

namespace {

void copy_to(std::vector<float>& dst, const float* src, int64_t n) { dst.assign(src, src + n); }

}  // namespace

GateLmPass::GateLmPass(const LlamaModel& model, const AttentionShape& shape, const MemoryGate& gate,
                       kc::ThreadPool& pool)
    : model_(model),
      shape_(shape),
      options_(edgeinfinite_options(gate.config())),
      pool_(pool),
      reader_(gate.config(), shape, 0.0f) {
  if (gate.has_query_projection()) reader_.add_query_projection();
}

StatusOr<std::unique_ptr<GateLmPass>> GateLmPass::create(const LlamaModel& model, const MemoryGate& gate,
                                                         kc::ThreadPool& pool) {
  const AttentionShape shape = AttentionShape::of(model);
  if (gate.n_layer() != shape.n_layer || gate.bias(0).size() != size_t(shape.n_head)) {
    return absl::InvalidArgumentError("the gate's layer or head counts differ from the model's");
  }
  EDGEINF_RETURN_IF_ERROR(validate_kv_options(edgeinfinite_options(gate.config()), shape));
  std::unique_ptr<GateLmPass> p(new GateLmPass(model, shape, gate, pool));
  KvPolicyOptions o = p->options_;
  o.gate = &p->reader_;
  p->policy_ =
      std::make_unique<EdgeInfinitePolicy>(shape, o, make_cpu_kv_store(shape, EdgeInfinitePolicy::store_shape(o)));
  for (int il = 0; il < shape.n_layer; ++il) {
    const LayerWeights& l = model.layer(il);
    p->mats_.push_back({TransposedWeight::of(l.wq), TransposedWeight::of(l.wk), TransposedWeight::of(l.wv),
                        TransposedWeight::of(l.wo), TransposedWeight::of(l.w_gate), TransposedWeight::of(l.w_up),
                        TransposedWeight::of(l.w_down)});
  }
  p->output_ = TransposedWeight::of(model.output());
  p->rec_.resize(size_t(shape.n_layer));
  return p;
}

void GateLmPass::reset() { policy_->reset(); }

Status GateLmPass::save(std::string* out) const {
  out->clear();
  ByteWriter w(out);
  return policy_->save(w);
}

Status GateLmPass::restore(const std::string& bytes) {
  ByteReader r(bytes, "gate training state");
  return policy_->restore(r);
}

// The forward pass's steps (engine/backend/llama_pass.h) on kernels/cpu, recording what the
// backward pass reads, with the gate being trained mixing the memory into attention.
struct GateLmPass::Ops {
  struct Error {};
  static bool ok(Error) { return true; }
  struct Matmul {
    const WeightView& w;
    const float* bias;
    const float* in;
    float* out;
  };

  GateLmPass& pass;
  const MemoryGate& gate;
  std::span<const TokenId> tokens;
  const PassBuffers& b;
  int64_t n;
  int cur = 0;  // the layer whose weights were asked for last

  Error embed(int64_t count) {
    const WeightView& embd = pass.model_.token_embd();
    const int64_t n_embd = pass.model_.config().n_embd;
    for (int64_t t = 0; t < count; ++t) {
      const auto* row = static_cast<const uint8_t*>(embd.data) + int64_t(tokens[size_t(t)]) * embd.row_bytes;
      kc::vec_ops().dequantize_row(embd.type, row, b.x + t * n_embd, n_embd);
    }
    return {};
  }
  const LayerWeights& layer(int il) {
    cur = il;
    return pass.model_.layer(il);
  }
  static const float* bias(const float* v) { return v; }
  Error rmsnorm(const float* x, const float* weight, float* out, int64_t count) {
    const LlamaConfig& c = pass.model_.config();
    if (weight == pass.model_.layer(cur).ffn_norm) copy_to(pass.rec_[size_t(cur)].x_mid, x, count * c.n_embd);
    kc::rmsnorm_forward({x, weight, out, count, c.n_embd, c.rms_eps}, pass.pool_);
    return {};
  }
  Error matmuls(std::initializer_list<Matmul> ms, int64_t count) {
    kernels::MatmulParams ps[3];
    size_t k = 0;
    for (const Matmul& m : ms) ps[k++] = matmul_params(m.w, m.in, m.out, count, m.bias);
    if (k == 1) {
      kc::matmul_forward(ps[0], pass.pool_);
    } else {
      kc::matmul_forward_batch(std::span<const kernels::MatmulParams>(ps, k), pass.pool_);
    }
    return {};
  }
  Error attend(int il, int64_t count) {
    const AttentionShape& s = pass.shape_;
    LayerRecord& r = pass.rec_[size_t(il)];
    copy_to(r.x_in, b.x, count * pass.model_.config().n_embd);
    copy_to(r.q_pre, b.q, count * s.q_dim());
    copy_to(r.k_pre, b.k, count * s.kv_dim());
    copy_to(r.v, b.v, count * s.kv_dim());
    const LayerAttention a{il, count, b.q, b.k, b.v, b.attn};
    pass.read_memory_ = pass.policy_->attend_parts(a, pass.pool_);
    copy_to(r.q_rot, b.q, count * s.q_dim());
    copy_to(r.a_loc, b.attn, count * s.q_dim());
    if (pass.read_memory_) {
      if (gate.has_query_projection())
        copy_to(r.q_mem, pass.policy_->store()->host_memory_queries(), count * s.q_dim());
      copy_to(r.a_mem, pass.policy_->store()->host_memory_read(), count * s.q_dim());
      r.g.resize(size_t(count * s.n_head));
      gate.compute(il, r.a_mem.data(), r.a_loc.data(), count, r.g.data(), pass.pool_);
      kc::gate_blend_forward(
          {r.g.data(), r.a_mem.data(), r.a_loc.data(), b.attn, s.q_dim(), count, s.n_head, s.head_dim}, pass.pool_);
    }
    return {};
  }
  static Error add(float* x, const float* y, int64_t count) {
    for (int64_t i = 0; i < count; ++i) x[i] += y[i];
    return {};
  }
  Error swiglu(float* g, const float* up, int64_t count) {
    const int64_t n_ff = pass.model_.config().n_ff;
    copy_to(pass.rec_[size_t(cur)].gate_pre, g, count * n_ff);
    copy_to(pass.rec_[size_t(cur)].up, up, count * n_ff);
    kc::swiglu_forward({g, up, g, n_ff, count, n_ff}, pass.pool_);
    return {};
  }
  Error logits(int64_t first, int64_t n_out) {
    const LlamaConfig& c = pass.model_.config();
    copy_to(pass.x_final_, b.x + first * c.n_embd, n_out * c.n_embd);
    kc::rmsnorm_forward({b.x + first * c.n_embd, pass.model_.output_norm(), b.xn, n_out, c.n_embd, c.rms_eps},
                        pass.pool_);
    pass.logits_.resize(size_t(n_out * c.n_vocab));
    kc::matmul_forward(matmul_params(pass.model_.output(), b.xn, pass.logits_.data(), n_out), pass.pool_);
    return {};
  }
};

StatusOr<BatchLoss> GateLmPass::run(std::span<const TokenId> tokens, std::span<const int32_t> targets,
                                    const MemoryGate& gate, GateGradient* grad, float loss_scale) {
  const LlamaConfig& c = model_.config();
  const int64_t n = int64_t(tokens.size());
  if (n == 0 || n > policy_->max_batch()) {
    return absl::InvalidArgumentError(absl::StrCat("a batch takes 1 to ", policy_->max_batch(), " tokens"));
  }
  if (!targets.empty() && targets.size() != tokens.size()) {
    return absl::InvalidArgumentError("one target per token, or none");
  }
  for (TokenId t : tokens) {
    if (t < 0 || t >= c.n_vocab) return absl::InvalidArgumentError(absl::StrCat("token ", t, " is out of range"));
  }
  if (gate.has_query_projection() != reader_.has_query_projection()) {
    return absl::InvalidArgumentError("the gate's query projection differs from the one the pass was made for");
  }
  for (int il = 0; reader_.has_query_projection() && il < gate.n_layer(); ++il) reader_.query(il) = gate.query(il);
  EDGEINF_RETURN_IF_ERROR(policy_->begin_batch(n));
  const AttentionShape& s = shape_;
  std::vector<float> x(size_t(n * c.n_embd)), xn(size_t(n * std::max<int64_t>(c.n_embd, s.q_dim()))),
      q(size_t(n * s.q_dim())), k(size_t(n * s.kv_dim())), v(size_t(n * s.kv_dim())), attn(size_t(n * s.q_dim())),
      g(size_t(n * c.n_ff)), up(size_t(n * c.n_ff));
  const PassBuffers b{x.data(), xn.data(), q.data(), k.data(), v.data(), attn.data(), g.data(), up.data()};
  Ops ops{*this, gate, tokens, b, n};
  run_llama_pass(ops, c, b, n, 0);
  policy_->end_batch(pool_);

  BatchLoss out;
  out.read_memory = read_memory_;
  if (targets.empty()) return out;
  std::vector<float> dlogits(size_t(n * c.n_vocab));
  out.nll = cross_entropy(logits_.data(), targets.data(), n, c.n_vocab, loss_scale, dlogits.data(), pool_);
  for (int32_t t : targets) out.n_scored += t >= 0 ? 1 : 0;
  if (grad == nullptr || !read_memory_) return out;

  // The state the batch attended to: every layer's entries (the batch's own at the end) and memory.
  n_kv_ = policy_->n_kept();
  base_ = n_kv_ - n;
  const KvStore& store = *policy_->store();
  std::string bytes;
  ByteWriter w(&bytes);
  EDGEINF_RETURN_IF_ERROR(store.save_rows(w, 0, n_kv_));
  EDGEINF_RETURN_IF_ERROR(store.save_memory(w));
  const size_t row_bytes = store.row_bytes();
  const int64_t kv_dim = s.kv_dim(), d = s.head_dim;
  keys_.resize(size_t(s.n_layer));
  values_.resize(size_t(s.n_layer));
  mem_m_.resize(size_t(s.n_layer));
  mem_z_.resize(size_t(s.n_layer));
  const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
  for (int il = 0; il < s.n_layer; ++il) {
    for (auto* rows : {&keys_[size_t(il)], &values_[size_t(il)]}) {
      rows->resize(size_t(n_kv_ * kv_dim));
      for (int64_t r = 0; r < n_kv_; ++r, p += row_bytes) {
        kc::vec_ops().dequantize_row(options_.kv_type, p, rows->data() + r * kv_dim, kv_dim);
      }
    }
  }
  for (int il = 0; il < s.n_layer; ++il) {
    const size_t nm = size_t(s.n_kv_head * d * d), nz = size_t(s.n_kv_head * d);
    mem_m_[size_t(il)].resize(nm);
    mem_z_[size_t(il)].resize(nz);
    std::memcpy(mem_m_[size_t(il)].data(), p, nm * sizeof(float));
    p += nm * sizeof(float);
    std::memcpy(mem_z_[size_t(il)].data(), p, nz * sizeof(float));
    p += nz * sizeof(float);
  }
  backward(n, dlogits.data(), gate, *grad);
  return out;
}

void GateLmPass::backward(int64_t n, const float* dlogits, const MemoryGate& gate, GateGradient& grad) {
  const LlamaConfig& c = model_.config();
  const AttentionShape& s = shape_;
  const int64_t E = c.n_embd, F = c.n_ff, Q = s.q_dim(), KV = s.kv_dim(), H = s.n_head, d = s.head_dim;
  auto zeros = [](int64_t count) { return std::vector<float>(size_t(count), 0.0f); };
  std::vector<int32_t> positions(static_cast<size_t>(n));
  for (int64_t t = 0; t < n; ++t) positions[size_t(t)] = int32_t(base_ + t);

  std::vector<float> dxn = zeros(n * E), dx = zeros(n * E);
  matmul_input_grad(output_, dlogits, n, dxn.data(), pool_);
  rmsnorm_backward(x_final_.data(), model_.output_norm(), dxn.data(), n, E, c.rms_eps, dx.data(), pool_);
  for (int il = s.n_layer - 1; il >= 0; --il) {
    const LayerRecord& r = rec_[size_t(il)];
    const LayerMatrices& m = mats_[size_t(il)];
    const LayerWeights& lw = model_.layer(il);
    // Feed-forward: x_out = x_mid + W_down (silu(W_gate xn2) * W_up xn2), xn2 = norm(x_mid).
    std::vector<float> dh = zeros(n * F), dgp = zeros(n * F), dup = zeros(n * F), dxn2 = zeros(n * E);
    matmul_input_grad(m.w_down, dx.data(), n, dh.data(), pool_);
    swiglu_backward(r.gate_pre.data(), r.up.data(), dh.data(), n * F, dgp.data(), dup.data());
    matmul_input_grad(m.w_gate, dgp.data(), n, dxn2.data(), pool_);
    matmul_input_grad(m.w_up, dup.data(), n, dxn2.data(), pool_);
    rmsnorm_backward(r.x_mid.data(), lw.ffn_norm, dxn2.data(), n, E, c.rms_eps, dx.data(), pool_);

    // Attention: x_mid = x_in + W_o A, A = A_loc + g (A_mem - A_loc) per head.
    std::vector<float> da = zeros(n * Q);
    matmul_input_grad(m.wo, dx.data(), n, da.data(), pool_);
    std::vector<float> da_loc = da, da_mem = zeros(n * Q);
    if (read_memory_) {
      const bool linear = gate.config().kind == GateKind::kLinear;
      const std::vector<float>& gw = gate.weight(il);
      std::vector<float>& gb = grad.bias[size_t(il)];
      std::vector<float>& gW = grad.weight[size_t(il)];
      std::vector<float> dz(static_cast<size_t>(H));
      for (int64_t t = 0; t < n; ++t) {
        for (int64_t h = 0; h < H; ++h) {
          const float gv = r.g[size_t(t * H + h)];
          const int64_t off = t * Q + h * d;
          float dg = 0;
          for (int64_t j = 0; j < d; ++j) {
            dg += da[size_t(off + j)] * (r.a_mem[size_t(off + j)] - r.a_loc[size_t(off + j)]);
            da_mem[size_t(off + j)] = gv * da[size_t(off + j)];
            da_loc[size_t(off + j)] = (1.0f - gv) * da[size_t(off + j)];
          }
          dz[size_t(h)] = dg * gv * (1.0f - gv);
          gb[size_t(h)] += dz[size_t(h)];
        }
        // The linear gate reads [A_mem; A_loc] of every head: its weights' gradient, and its own
        // path back to both (after the blend's path is in place for every head).
        for (int64_t h = 0; linear && h < H; ++h) {
          if (dz[size_t(h)] == 0.0f) continue;
          float* gw_row = gW.data() + h * 2 * Q;
          const float* w_row = gw.data() + h * 2 * Q;
          kc::vec_ops().axpy(gw_row, r.a_mem.data() + t * Q, dz[size_t(h)], Q);
          kc::vec_ops().axpy(gw_row + Q, r.a_loc.data() + t * Q, dz[size_t(h)], Q);
          kc::vec_ops().axpy(da_mem.data() + t * Q, w_row, dz[size_t(h)], Q);
          kc::vec_ops().axpy(da_loc.data() + t * Q, w_row + Q, dz[size_t(h)], Q);
        }
      }
    }
    std::vector<float> dq = zeros(n * Q), dk = zeros(n * KV), dv = zeros(n * KV);
    attention_backward(r.q_rot.data(), keys_[size_t(il)].data(), values_[size_t(il)].data(), r.a_loc.data(),
                       da_loc.data(), n, n_kv_, base_, s, dq.data(), dk.data(), dv.data(), pool_);
    rope_backward(dq.data(), positions.data(), n, s.n_head, s, pool_);
    rope_backward(dk.data(), positions.data(), n, s.n_kv_head, s, pool_);
    const bool projected = read_memory_ && gate.has_query_projection();
    std::vector<float> dq_mem = zeros(projected ? n * Q : 0);
    if (read_memory_) {
      memory_read_backward(projected ? r.q_mem.data() : r.q_pre.data(), mem_m_[size_t(il)].data(),
                           mem_z_[size_t(il)].data(), r.a_mem.data(), da_mem.data(), n, s,
                           projected ? dq_mem.data() : dq.data(), pool_);
    }
    if (projected) {
      // The memory read P q: d/dP[h] = sum_t dq_mem[t, h] q[t, h]^T, and dq[t, h] += P[h]^T dq_mem[t, h].
      const std::vector<float>& pw = gate.query(il);
      std::vector<float>& gp = grad.query[size_t(il)];
      pool_.run(H, [&](int64_t h) {
        for (int64_t t = 0; t < n; ++t) {
          const float* x = r.q_pre.data() + t * Q + h * d;
          const float* dy = dq_mem.data() + t * Q + h * d;
          for (int64_t i = 0; i < d; ++i) {
            if (dy[i] == 0.0f) continue;
            kc::vec_ops().axpy(gp.data() + (h * d + i) * d, x, dy[i], d);
            kc::vec_ops().axpy(dq.data() + t * Q + h * d, pw.data() + (h * d + i) * d, dy[i], d);
          }
        }
      });
    }
    std::vector<float> dxn1 = zeros(n * E);
    matmul_input_grad(m.wq, dq.data(), n, dxn1.data(), pool_);
    matmul_input_grad(m.wk, dk.data(), n, dxn1.data(), pool_);
    matmul_input_grad(m.wv, dv.data(), n, dxn1.data(), pool_);
    rmsnorm_backward(r.x_in.data(), lw.attn_norm, dxn1.data(), n, E, c.rms_eps, dx.data(), pool_);
  }
}

double GateLmPass::gate_input_l1() const {
  double total = 0;
  int layers = 0;
  for (const LayerRecord& r : rec_) {
    if (r.a_mem.empty() || r.a_mem.size() != r.a_loc.size()) continue;
    double sum = 0;
    for (size_t i = 0; i < r.a_mem.size(); ++i) sum += std::fabs(r.a_mem[i]) + std::fabs(r.a_loc[i]);
    total += sum / double(r.a_mem.size() / size_t(shape_.q_dim()));
    ++layers;
  }
  return layers > 0 ? total / layers : 0.0;
}

namespace {

// One training sequence: its batches (a document read in batches of L, then what follows it in
// batches of its own, as a session's turn is), the policy's state just before its first batch
// that reads the memory (everything earlier is independent of the gate), and the first token
// scored.
struct LmSequence {
  std::span<const TokenId> tokens;
  std::vector<int64_t> batches;  // each batch's first token; the last one runs to the end
  size_t first = 0;              // the first batch that reads the memory
  std::string prefix;            // the state before it
  int64_t score_from = 0;        // tokens before this one are not predicted
};

int64_t batch_end(const LmSequence& s, size_t i) {
  return i + 1 < s.batches.size() ? s.batches[i + 1] : int64_t(s.tokens.size());
}

StatusOr<LmSequence> prepare_sequence(GateLmPass& pass, std::span<const TokenId> tokens, int64_t split,
                                      int64_t score_from, int64_t segment, const MemoryGate& gate) {
  LmSequence s{tokens, {}, 0, {}, score_from};
  const int64_t end = int64_t(tokens.size());
  for (int64_t b = 0; b < split; b += segment) s.batches.push_back(b);
  for (int64_t b = split; b < end; b += segment) s.batches.push_back(b);
  pass.reset();
  for (size_t i = 0; i < s.batches.size(); ++i) {
    std::string before;
    EDGEINF_RETURN_IF_ERROR(pass.save(&before));
    const int64_t b = s.batches[i], n = batch_end(s, i) - b;
    EDGEINF_ASSIGN_OR_RETURN(const BatchLoss r, pass.run(tokens.subspan(size_t(b), size_t(n)), {}, gate, nullptr));
    if (r.read_memory) {
      if (score_from > 0 && score_from <= b) {
        return absl::InvalidArgumentError(absl::StrCat("a sequence of ", tokens.size(), " tokens is scored from token ",
                                                       score_from, ", before its first batch that reads the memory (",
                                                       b, "), where the gate changes nothing"));
      }
      if (end - std::max(b + 1, score_from) <= 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("a sequence of ", tokens.size(), " tokens has nothing to score once the memory is read"));
      }
      s.prefix = std::move(before);
      s.first = i;
      return s;
    }
  }
  return absl::InvalidArgumentError(absl::StrCat("a sequence of ", tokens.size(),
                                                 " tokens never reads the memory: the context must exceed S + W + L"));
}

// Mean loss per scored token of a sequence from its prefix (and, with grad, its gradient).
// Batches with no token scored run forward only.
StatusOr<double> sequence_loss(GateLmPass& pass, const LmSequence& s, const MemoryGate& gate, GateGradient* grad) {
  EDGEINF_RETURN_IF_ERROR(pass.restore(s.prefix));
  const int64_t end = int64_t(s.tokens.size());
  const int64_t scored_from = std::max(s.batches[s.first] + 1, s.score_from);
  const int64_t n_scored = end - scored_from;
  double nll = 0;
  std::vector<int32_t> targets;
  for (size_t i = s.first; i < s.batches.size(); ++i) {
    const int64_t b = s.batches[i], n = batch_end(s, i) - b;
    const auto batch = s.tokens.subspan(size_t(b), size_t(n));
    if (b + n < scored_from) {
      EDGEINF_RETURN_IF_ERROR(pass.run(batch, {}, gate, nullptr).status());
      continue;
    }
    targets.resize(size_t(n));
    for (int64_t k = 0; k < n; ++k) {
      const int64_t next = b + k + 1;
      targets[size_t(k)] = next < end && next >= scored_from ? s.tokens[size_t(next)] : -1;
    }
    EDGEINF_ASSIGN_OR_RETURN(const BatchLoss r, pass.run(batch, targets, gate, grad, 1.0f / float(n_scored)));
    nll += r.nll;
  }
  return nll / double(n_scored);
}

StatusOr<double> mean_loss(GateLmPass& pass, std::span<const LmSequence> seqs, const MemoryGate& gate) {
  double sum = 0;
  for (const LmSequence& s : seqs) {
    EDGEINF_ASSIGN_OR_RETURN(const double l, sequence_loss(pass, s, gate, nullptr));
    sum += l;
  }
  return sum / double(seqs.size());
}

// Every parameter of a gate as one list of arrays (biases, weights, then query projections, layer
// by layer; the arrays a gate lacks are empty).
std::vector<std::vector<float>*> params_of(MemoryGate& g) {
  std::vector<std::vector<float>*> out;
  for (int il = 0; il < g.n_layer(); ++il) out.push_back(&g.bias(il));
  for (int il = 0; il < g.n_layer(); ++il) out.push_back(&g.weight(il));
  for (int il = 0; il < g.n_layer(); ++il) out.push_back(&g.query(il));
  return out;
}
std::vector<std::vector<float>*> params_of(GateGradient& g) {
  std::vector<std::vector<float>*> out;
  for (auto* group : {&g.bias, &g.weight, &g.query}) {
    for (auto& a : *group) out.push_back(&a);
  }
  return out;
}

// What a checkpoint must agree on to be resumed: the model, the gate's shape and starting
// parameters, the training data (`data`: its size and checksum) and every option but the steps.
std::string run_identity(const LlamaModel& model, const MemoryGate& init, const std::string& data,
                         const LmTrainOptions& o) {
  const GateConfig& c = init.config();
  uint32_t hi = 0;
  for (int il = 0; il < init.n_layer(); ++il) {
    hi = crc32c(init.bias(il).data(), init.bias(il).size() * sizeof(float), hi);
    hi = crc32c(init.weight(il).data(), init.weight(il).size() * sizeof(float), hi);
    hi = crc32c(init.query(il).data(), init.query(il).size() * sizeof(float), hi);
  }
  const std::string query =
      init.has_query_projection() ? absl::StrCat(" query projection lr ", o.query_lr) : std::string();
  return absl::StrCat("model ", model.gguf().fingerprint(), "; gate ", gate_kind_name(c.kind), " S=", c.sink,
                      " W=", c.window, " L=", c.segment, " ", memory_update_name(c.update), " ",
                      kv_type_name(c.kv_type), " init ", hi, "; ", data, " validation ", o.validation_sequences, " lr ",
                      o.lr, query, " eval every ", o.eval_every, " min bias ", o.min_bias, " seed ", o.seed);
}

constexpr uint32_t kCheckpointMagic = 0x4c474945;  // "EIGL"

struct TrainState {
  int step = 0;
  double lr_weight = 0, val = NAN;
  LmTrainReport report;
  std::vector<std::vector<float>> m, v, best;
};

std::string encode_checkpoint(const std::string& identity, const TrainState& st, MemoryGate& gate) {
  std::string out;
  ByteWriter w(&out);
  w.put(kCheckpointMagic);
  w.put_string(identity);
  w.put<int32_t>(st.step);
  w.put(st.lr_weight);
  w.put(st.val);
  w.put(st.report.closed_val_nll);
  w.put(st.report.init_val_nll);
  w.put(st.report.best_val_nll);
  w.put<int32_t>(st.report.best_step);
  for (const auto* group : {&st.m, &st.v, &st.best}) {
    for (const std::vector<float>& a : *group) w.put_array(a.data(), a.size());
  }
  for (const std::vector<float>* p : params_of(gate)) w.put_array(p->data(), p->size());
  w.put(crc32c(out.data(), out.size()));
  return out;
}

Status decode_checkpoint(const std::string& bytes, const std::string& identity, TrainState& st, MemoryGate& gate,
                         const std::string& path) {
  uint32_t stored = 0;
  if (bytes.size() >= 8) std::memcpy(&stored, bytes.data() + bytes.size() - 4, sizeof(stored));
  if (bytes.size() < 8 || crc32c(bytes.data(), bytes.size() - 4) != stored) {
    return absl::DataLossError(absl::StrCat("checkpoint '", path, "' is damaged or truncated (checksum)"));
  }
  ByteReader r(std::string_view(bytes.data(), bytes.size() - 4), absl::StrCat("checkpoint '", path, "'"));
  EDGEINF_RETURN_IF_ERROR(r.expect(kCheckpointMagic, "magic"));
  std::string id;
  EDGEINF_RETURN_IF_ERROR(r.get_string(&id));
  if (id != identity) {
    return absl::FailedPreconditionError(absl::StrCat("checkpoint '", path, "' is of another run (", id,
                                                      "); this run is ", identity,
                                                      ". Remove it or name another --checkpoint"));
  }
  int32_t step = 0, best_step = 0;
  EDGEINF_RETURN_IF_ERROR(r.get(&step));
  EDGEINF_RETURN_IF_ERROR(r.get(&st.lr_weight));
  EDGEINF_RETURN_IF_ERROR(r.get(&st.val));
  EDGEINF_RETURN_IF_ERROR(r.get(&st.report.closed_val_nll));
  EDGEINF_RETURN_IF_ERROR(r.get(&st.report.init_val_nll));
  EDGEINF_RETURN_IF_ERROR(r.get(&st.report.best_val_nll));
  EDGEINF_RETURN_IF_ERROR(r.get(&best_step));
  st.step = step;
  st.report.best_step = best_step;
  for (auto* group : {&st.m, &st.v, &st.best}) {
    for (std::vector<float>& a : *group) EDGEINF_RETURN_IF_ERROR(r.get_array(a.data(), a.size()));
  }
  for (std::vector<float>* p : params_of(gate)) EDGEINF_RETURN_IF_ERROR(r.get_array(p->data(), p->size()));
  if (r.remaining() != 0) return absl::DataLossError(absl::StrCat("checkpoint '", path, "' has trailing bytes"));
  return absl::OkStatus();
}

// Adam on the sequences' loss from `gate` (its closed heads already raised to min_bias), the last
// o.validation_sequences held out; see train_gate_lm.
StatusOr<std::unique_ptr<MemoryGate>> train_on_sequences(GateLmPass& pass, const std::vector<LmSequence>& seqs,
                                                         std::unique_ptr<MemoryGate> gate, const LmTrainOptions& o,
                                                         const std::string& identity, const LmTrainProgress& progress,
                                                         LmTrainReport* report,
                                                         std::chrono::steady_clock::time_point t0) {
  const std::span<const LmSequence> train(seqs.data(), seqs.size() - size_t(o.validation_sequences));
  const std::span<const LmSequence> val(seqs.data() + train.size(), size_t(o.validation_sequences));

  TrainState st;
  for (std::vector<float>* p : params_of(*gate)) {
    st.m.emplace_back(p->size(), 0.0f);
    st.v.emplace_back(p->size(), 0.0f);
    st.best.push_back(*p);
  }
  bool resumed = false;
  if (!o.checkpoint.empty()) {
    std::ifstream in(o.checkpoint, std::ios::binary);
    if (in) {
      std::stringstream ss;
      ss << in.rdbuf();
      EDGEINF_RETURN_IF_ERROR(decode_checkpoint(ss.str(), identity, st, *gate, o.checkpoint));
      st.report.resumed_at = st.step;
      resumed = true;
    }
  }
  if (!resumed) {
    MemoryGate closed = *gate;
    for (int il = 0; il < closed.n_layer(); ++il) {
      std::fill(closed.bias(il).begin(), closed.bias(il).end(), kClosedGateBias);
      std::fill(closed.weight(il).begin(), closed.weight(il).end(), 0.0f);
    }
    EDGEINF_ASSIGN_OR_RETURN(st.report.closed_val_nll, mean_loss(pass, val, closed));
    EDGEINF_ASSIGN_OR_RETURN(st.report.init_val_nll, mean_loss(pass, val, *gate));
    st.report.best_val_nll = st.val = st.report.init_val_nll;
    const double l1 = pass.gate_input_l1();
    st.lr_weight = l1 > 0 ? o.lr / l1 : o.lr;
  }

  // Adam over every parameter; the linear weights take steps scaled to their inputs.
  constexpr float kBeta1 = 0.9f, kBeta2 = 0.999f, kEps = 1e-8f;
  GateGradient grad(*gate);
  const int first_step = st.step;
  const int n_layer = gate->n_layer();
  const auto loop_start = std::chrono::steady_clock::now();
  while (st.step < o.steps) {
    const int step = st.step + 1;
    grad.zero();
    EDGEINF_ASSIGN_OR_RETURN(const double train_loss,
                             sequence_loss(pass, train[size_t(st.step) % train.size()], *gate, &grad));
    const std::vector<std::vector<float>*> ps = params_of(*gate), gs = params_of(grad);
    const float c1 = 1.0f - std::pow(kBeta1, float(step)), c2 = 1.0f - std::pow(kBeta2, float(step));
    for (size_t a = 0; a < ps.size(); ++a) {
      const float lr = a < size_t(n_layer) ? o.lr : a < size_t(2 * n_layer) ? float(st.lr_weight) : o.query_lr;
      std::vector<float>& p = *ps[a];
      const std::vector<float>& g = *gs[a];
      for (size_t i = 0; i < p.size(); ++i) {
        st.m[a][i] = kBeta1 * st.m[a][i] + (1 - kBeta1) * g[i];
        st.v[a][i] = kBeta2 * st.v[a][i] + (1 - kBeta2) * g[i] * g[i];
        p[i] -= lr * (st.m[a][i] / c1) / (std::sqrt(st.v[a][i] / c2) + kEps);
      }
    }
    st.step = step;
    if (step % o.eval_every == 0 || step == o.steps) {
      EDGEINF_ASSIGN_OR_RETURN(st.val, mean_loss(pass, val, *gate));
      if (st.val < st.report.best_val_nll) {
        st.report.best_val_nll = st.val;
        st.report.best_step = step;
        for (size_t a = 0; a < ps.size(); ++a) st.best[a] = *ps[a];
      }
    }
    if (!o.checkpoint.empty()) {
      const std::string bytes = encode_checkpoint(identity, st, *gate);
      EDGEINF_RETURN_IF_ERROR(write_file_atomically(o.checkpoint, bytes.data(), bytes.size()));
    }
    if (progress) {
      const double spent = std::chrono::duration<double>(std::chrono::steady_clock::now() - loop_start).count();
      progress(step, o.steps, train_loss, st.val, spent / double(step - first_step) * double(o.steps - step));
    }
  }
  const std::vector<std::vector<float>*> ps = params_of(*gate);
  for (size_t a = 0; a < ps.size(); ++a) *ps[a] = st.best[a];
  st.report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (report != nullptr) *report = st.report;
  return gate;
}

Status check_options(const LmTrainOptions& o, size_t n_sequences) {
  if (n_sequences <= size_t(std::max(0, o.validation_sequences)) || o.validation_sequences < 1 || o.steps < 0 ||
      o.eval_every < 1 || !(o.lr > 0) || !(o.query_lr > 0)) {
    return absl::InvalidArgumentError(
        "need sequences > validation sequences >= 1, steps >= 0, a positive evaluation interval and learning rate");
  }
  return absl::OkStatus();
}

std::unique_ptr<MemoryGate> starting_gate(const MemoryGate& init, const LmTrainOptions& o) {
  auto gate = std::make_unique<MemoryGate>(init);
  for (int il = 0; il < gate->n_layer(); ++il) {
    for (float& b : gate->bias(il)) b = std::max(b, o.min_bias);
  }
  return gate;
}

}  // namespace

StatusOr<std::unique_ptr<MemoryGate>> train_gate_lm(const LlamaModel& model, std::span<const TokenId> tokens,
                                                    const MemoryGate& init, const LmTrainOptions& o,
                                                    kc::ThreadPool& pool, const LmTrainProgress& progress,
                                                    LmTrainReport* report) {
  const auto t0 = std::chrono::steady_clock::now();
  const GateConfig& config = init.config();
  EDGEINF_RETURN_IF_ERROR(check_options(o, size_t(std::max(0, o.sequences))));
  const int64_t tau = int64_t(config.sink) + config.window + config.segment;
  if (o.context <= tau) {
    return absl::InvalidArgumentError(
        absl::StrCat("the context (", o.context, ") must exceed sink + window + segment (", tau, ")"));
  }
  const int64_t n_windows = int64_t(tokens.size()) / o.context;
  if (n_windows < o.sequences) {
    return absl::InvalidArgumentError(absl::StrCat("the training text has ", tokens.size(), " tokens; ", o.sequences,
                                                   " sequences of ", o.context, " need ",
                                                   int64_t(o.sequences) * o.context));
  }
  EDGEINF_ASSIGN_OR_RETURN(std::unique_ptr<GateLmPass> pass, GateLmPass::create(model, init, pool));

  // The sequences: windows of the text in a seeded order; the last ones drawn are held out.
  std::mt19937_64 rng(o.seed);
  std::vector<int64_t> order(static_cast<size_t>(n_windows));
  for (int64_t i = 0; i < n_windows; ++i) order[size_t(i)] = i;
  for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[size_t(rng() % i)]);
  std::unique_ptr<MemoryGate> gate = starting_gate(init, o);
  std::vector<LmSequence> seqs;
  for (int i = 0; i < o.sequences; ++i) {
    const auto window = tokens.subspan(size_t(order[size_t(i)] * o.context), size_t(o.context));
    EDGEINF_ASSIGN_OR_RETURN(LmSequence s, prepare_sequence(*pass, window, o.context, 0, config.segment, *gate));
    seqs.push_back(std::move(s));
  }
  const std::string data = absl::StrCat("text ", tokens.size(), " tokens ", crc32c(tokens.data(), tokens.size_bytes()),
                                        "; context ", o.context, " sequences ", o.sequences);
  return train_on_sequences(*pass, seqs, std::move(gate), o, run_identity(model, init, data, o), progress, report, t0);
}

StatusOr<std::unique_ptr<MemoryGate>> train_gate_sft(const LlamaModel& model,
                                                     std::span<const GateTrainingSample> samples,
                                                     const MemoryGate& init, const LmTrainOptions& o,
                                                     kc::ThreadPool& pool, const LmTrainProgress& progress,
                                                     LmTrainReport* report) {
  const auto t0 = std::chrono::steady_clock::now();
  EDGEINF_RETURN_IF_ERROR(check_options(o, samples.size()));
  EDGEINF_ASSIGN_OR_RETURN(std::unique_ptr<GateLmPass> pass, GateLmPass::create(model, init, pool));
  std::unique_ptr<MemoryGate> gate = starting_gate(init, o);
  std::vector<LmSequence> seqs;
  uint32_t crc = 0;
  size_t n_tokens = 0;
  for (size_t i = 0; i < samples.size(); ++i) {
    const GateTrainingSample& t = samples[i];
    const int64_t n = int64_t(t.tokens.size());
    if (!(t.document_end > 0 && t.document_end <= n && t.score_from > 0 && t.score_from < n)) {
      return absl::InvalidArgumentError(absl::StrCat("sample ", i, " of ", n, " tokens: its document ends at ",
                                                     t.document_end, " and its scoring starts at ", t.score_from));
    }
    auto s = prepare_sequence(*pass, t.tokens, t.document_end, t.score_from, init.config().segment, *gate);
    if (!s.ok()) return absl::InvalidArgumentError(absl::StrCat("sample ", i, ": ", s.status().message()));
    seqs.push_back(std::move(*s));
    crc = crc32c(t.tokens.data(), t.tokens.size() * sizeof(TokenId), crc);
    const int64_t marks[2] = {t.document_end, t.score_from};
    crc = crc32c(marks, sizeof(marks), crc);
    n_tokens += t.tokens.size();
  }
  const std::string data = absl::StrCat("samples ", samples.size(), " of ", n_tokens, " tokens ", crc);
  return train_on_sequences(*pass, seqs, std::move(gate), o, run_identity(model, init, data, o), progress, report, t0);
}

}  // namespace edgeinf
