// The CUDA backend: the model's weights (as stored: quantised blocks stay quantised) in one device
// allocation, one stream and one cuBLAS handle, and the Llama forward pass (llama_pass.h) on the
// kernels of kernels/cuda: dequantising GEMV for up to 8 tokens and for decode, cuBLAS over a
// decoded weight scratch for longer prefill batches. Activations are shared by the backend's
// contexts (one forward pass at a time) and grow to the largest batch seen; each context's
// attention state is a KV store on the device (cuda_kv_store.h) under the engine's own policies.
#include <cuda_runtime.h>

#include <algorithm>
#include <initializer_list>
#include <mutex>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/backend/backend.h"
#include "engine/backend/cuda/cuda_kv_store.h"
#include "engine/backend/llama_pass.h"
#include "kernels/cuda/arena.h"
#include "kernels/cuda/cublas_api.h"
#include "kernels/cuda/ops.h"
#include "kernels/cuda/runtime.h"

namespace edgeinf {

bool cuda_backend_built() { return true; }

namespace cuda_backend {
namespace {

namespace kcu = kernels::cuda;
using kcu::ArenaLayout;
using kcu::DeviceArena;

// Tokens one GEMV call takes (kernels/cuda/gemv.cu).
constexpr int64_t kGemvTokens = 8;

// A weight matrix on the device: `view` is the model's, with data pointing at the device copy.
struct DeviceWeight {
  const void* host = nullptr;
  void* device = nullptr;
  WeightView view;
  size_t bytes() const { return size_t(view.n_out * view.row_bytes); }
};

struct DeviceVector {
  const float* host = nullptr;
  float* data = nullptr;
  int64_t n = 0;
};

struct DeviceLayer {
  DeviceVector attn_norm, ffn_norm, bq, bk, bv;
  DeviceWeight wq, wk, wv, wo, w_gate, w_up, w_down;
};

DeviceWeight weight_of(const WeightView& w) { return DeviceWeight{w.data, nullptr, w}; }

DeviceVector vector_of(const float* v, int64_t n) { return DeviceVector{v, nullptr, v != nullptr ? n : 0}; }

// Activations of one forward pass, each [n_tok, width], on the device.
struct Activations {
  float *x, *xn, *q, *k, *v, *attn, *gate, *up, *logits;
  int32_t* tokens;
};

class CudaBackend final : public ModelBackend {
 public:
  explicit CudaBackend(const LlamaModel& model) : model_(model), shape_(AttentionShape::of(model)) {}

  ~CudaBackend() override {
    if (cublas_ != nullptr) blas_->destroy(cublas_);
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }

  Status init() {
    std::string why;
    if (!kcu::device_available(&why))
      return absl::FailedPreconditionError(absl::StrCat("no usable CUDA device: ", why));
    EDGEINF_RETURN_IF_ERROR(
        cuda_status(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "creating a stream"));
    blas_ = kcu::cublas_api(&why);
    if (blas_ == nullptr) return absl::FailedPreconditionError(why);
    if (blas_->create(&cublas_) != CUBLAS_STATUS_SUCCESS) {
      cublas_ = nullptr;
      return absl::InternalError("cuBLAS could not be initialised");
    }
    // Full FP32 products: the prefill GEMMs must agree with the CPU backend, not just be fast.
    blas_->set_math_mode(cublas_, CUBLAS_DEFAULT_MATH);
    describe_ = kcu::device_summary();

    const LlamaConfig& c = model_.config();
    embd_ = weight_of(model_.token_embd());
    output_ = weight_of(model_.output());
    output_norm_ = vector_of(model_.output_norm(), c.n_embd);
    freq_factors_ = vector_of(model_.rope_freq_factors(), c.n_rot / 2);
    layers_.resize(size_t(c.n_layer));
    for (int il = 0; il < c.n_layer; ++il) {
      const LayerWeights& l = model_.layer(il);
      DeviceLayer& d = layers_[size_t(il)];
      d.attn_norm = vector_of(l.attn_norm, c.n_embd);
      d.ffn_norm = vector_of(l.ffn_norm, c.n_embd);
      d.bq = vector_of(l.bq, l.wq.n_out);
      d.bk = vector_of(l.bk, l.wk.n_out);
      d.bv = vector_of(l.bv, l.wv.n_out);
      d.wq = weight_of(l.wq), d.wk = weight_of(l.wk), d.wv = weight_of(l.wv), d.wo = weight_of(l.wo);
      d.w_gate = weight_of(l.w_gate), d.w_up = weight_of(l.w_up), d.w_down = weight_of(l.w_down);
    }
    // Every tensor into one allocation: size it, take the pieces, copy.
    ArenaLayout sizing(nullptr);
    place_weights(sizing);
    if (!weights_.reserve(sizing.bytes(), &why)) {
      return absl::ResourceExhaustedError(
          absl::StrCat("no device memory for the model's weights (", sizing.bytes() >> 20, " MiB): ", why));
    }
    ArenaLayout taking(&weights_);
    place_weights(taking);
    EDGEINF_RETURN_IF_ERROR(cuda_status(upload_weights(), "copying the weights to the device"));
    if (c.tied_output) output_.view.data = embd_.device;
    device_shape_ = shape_;
    device_shape_.rope_freq_factors = freq_factors_.data;
    return absl::OkStatus();
  }

  const char* device() const override { return "cuda"; }
  const LlamaModel& model() const override { return model_; }
  std::string describe() const override { return describe_; }
  bool supports(const std::string& policy) const override {
    const KvPolicyTraits* traits = find_kv_policy(policy);
    return traits != nullptr && traits->device_form;
  }

  // The policies are the CPU's (engine/kv); their arrays live in stores on this device.
  StatusOr<std::unique_ptr<KvPolicy>> make_policy(const KvPolicyOptions& options) override {
    EDGEINF_RETURN_IF_ERROR(validate_kv_options(options, device_shape_));
    if (!supports(options.name)) {
      return absl::InvalidArgumentError(
          absl::StrCat("the ", options.name, " policy runs on the CPU only (--device cpu); on cuda: ",
                       absl::StrJoin(kv_policy_names([](const KvPolicyTraits& t) { return t.device_form; }), ", ")));
    }
    return make_kv_policy(options, device_shape_, [this](const KvStoreShape& shape) {
      return make_cuda_kv_store(device_shape_, shape, stream_);
    });
  }

  Status forward(std::span<const TokenId> tokens, KvPolicy& policy, bool all_logits, float* logits) override {
    if (!on_this_device(policy)) return absl::InvalidArgumentError("the policy was not made by the CUDA backend");
    KvPolicy* const p = &policy;
    const int64_t n = int64_t(tokens.size());
    if (n <= 0 || n > policy.max_batch()) {
      return absl::InvalidArgumentError(absl::StrCat("a forward batch takes 1 to ", policy.max_batch(), " tokens"));
    }
    std::lock_guard<std::mutex> lock(mu_);
    EDGEINF_RETURN_IF_ERROR(reserve_activations(n));
    EDGEINF_RETURN_IF_ERROR(policy.begin_batch(n));
    KvPolicy* const one[] = {p};
    const int64_t first = all_logits ? 0 : n - 1;
    return run(tokens, one, false, first, logits);
  }

  Status forward_each(std::span<KvPolicy* const> policies, std::span<const TokenId> tokens, float* logits) override {
    if (policies.empty() || policies.size() != tokens.size()) {
      return absl::InvalidArgumentError("forward_each needs one token per policy");
    }
    for (KvPolicy* policy : policies) {
      if (!on_this_device(*policy)) return absl::InvalidArgumentError("a policy was not made by the CUDA backend");
    }
    std::lock_guard<std::mutex> lock(mu_);
    EDGEINF_RETURN_IF_ERROR(reserve_activations(int64_t(policies.size())));
    for (KvPolicy* p : policies) EDGEINF_RETURN_IF_ERROR(p->begin_batch(1));
    return run(tokens, policies, true, 0, logits);
  }

 private:
  // Every tensor to copy (a tied output matrix is the embedding matrix, copied once).
  template <typename F>
  void for_each_tensor(F&& f) {
    f(embd_), f(output_norm_), f(freq_factors_);
    if (!model_.config().tied_output) f(output_);
    for (DeviceLayer& d : layers_) {
      f(d.attn_norm), f(d.ffn_norm), f(d.bq), f(d.bk), f(d.bv);
      f(d.wq), f(d.wk), f(d.wv), f(d.wo), f(d.w_gate), f(d.w_up), f(d.w_down);
    }
  }

  void place_weights(ArenaLayout& l) {
    size_t largest = 0;
    for_each_tensor([&](auto& t) {
      if constexpr (std::is_same_v<std::decay_t<decltype(t)>, DeviceWeight>) {
        t.device = l.template take<uint8_t>(t.bytes());
        t.view.data = t.device;
        largest = std::max(largest, size_t(t.view.n_in * t.view.n_out));
      } else {
        t.data = t.n > 0 ? l.template take<float>(size_t(t.n)) : nullptr;
      }
    });
    w_scratch_floats_ = largest;
  }

  cudaError_t upload_weights() {
    cudaError_t e = cudaSuccess;
    for_each_tensor([&](auto& t) {
      if (e != cudaSuccess) return;
      if constexpr (std::is_same_v<std::decay_t<decltype(t)>, DeviceWeight>) {
        e = cudaMemcpyAsync(t.device, t.host, t.bytes(), cudaMemcpyHostToDevice, stream_);
      } else if (t.data != nullptr) {
        e = cudaMemcpyAsync(t.data, t.host, size_t(t.n) * sizeof(float), cudaMemcpyHostToDevice, stream_);
      }
    });
    if (e != cudaSuccess) return e;
    return cudaStreamSynchronize(stream_);
  }

  // Activations for n tokens; the GEMM weight scratch comes with the first batch over 8 tokens.
  Status reserve_activations(int64_t n) {
    const bool need_scratch = n > kGemvTokens && w_scratch_ == nullptr;
    if (n <= act_tokens_ && !need_scratch) return absl::OkStatus();
    const int64_t tokens = std::max(n, act_tokens_);
    auto layout = [&](ArenaLayout& l) {
      const LlamaConfig& c = model_.config();
      const size_t t = size_t(tokens);
      act_.x = l.take<float>(t * size_t(c.n_embd));
      act_.xn = l.take<float>(t * size_t(std::max<int64_t>(c.n_embd, shape_.q_dim())));
      act_.q = l.take<float>(t * size_t(shape_.q_dim()));
      act_.k = l.take<float>(t * size_t(shape_.kv_dim()));
      act_.v = l.take<float>(t * size_t(shape_.kv_dim()));
      act_.attn = l.take<float>(t * size_t(shape_.q_dim()));
      act_.gate = l.take<float>(t * size_t(c.n_ff));
      act_.up = l.take<float>(t * size_t(c.n_ff));
      act_.logits = l.take<float>(t * size_t(c.n_vocab));
      act_.tokens = l.take<int32_t>(t);
      w_scratch_ = tokens > kGemvTokens ? l.take<float>(w_scratch_floats_) : nullptr;
    };
    ArenaLayout sizing(nullptr);
    layout(sizing);
    std::string why;
    if (!activations_.reserve(sizing.bytes(), &why)) {
      act_tokens_ = 0;
      w_scratch_ = nullptr;
      return absl::ResourceExhaustedError(absl::StrCat("no device memory for activations of ", tokens, " tokens (",
                                                       sizing.bytes() >> 20, " MiB): ", why));
    }
    ArenaLayout taking(&activations_);
    layout(taking);
    act_tokens_ = tokens;
    return absl::OkStatus();
  }

  // y = x W^T (+ bias) for n rows; GEMV in groups of 8 rows when per_token or n <= 8.
  cudaError_t matmul(const DeviceWeight& w, const float* x, float* y, int64_t n, const DeviceVector* bias,
                     bool per_token) {
    kernels::MatmulParams p = matmul_params(w.view, x, y, n, bias != nullptr ? bias->data : nullptr, per_token);
    if (!per_token && n > kGemvTokens) return kcu::gemm_forward(p, w_scratch_, cublas_, stream_);
    for (int64_t t0 = 0; t0 < n; t0 += kGemvTokens) {
      p.n_tok = std::min(kGemvTokens, n - t0);
      p.x = x + t0 * p.x_stride;
      p.y = y + t0 * p.y_stride;
      EDGEINF_CUDA_TRY(kcu::gemv_forward(p, stream_));
    }
    return cudaSuccess;
  }

  cudaError_t rmsnorm(const float* x, const DeviceVector& weight, float* out, int64_t n) {
    const LlamaConfig& c = model_.config();
    return kcu::rmsnorm_forward({x, weight.data, out, n, c.n_embd, c.rms_eps}, stream_);
  }

  // A policy whose arrays are in a store on a CUDA device.
  static bool on_this_device(const KvPolicy& p) {
    return p.store() != nullptr && std::string_view(p.store()->device()) == "cuda";
  }

  // The forward pass (run_llama_pass) and the final norm and output projection of rows
  // [first, n) into logits (host). One policy takes every token; several take one token each.
  Status run(std::span<const TokenId> tokens, std::span<KvPolicy* const> policies, bool per_token, int64_t first,
             float* logits) {
    Status st = cuda_status(run_device(tokens, policies, per_token, first, logits), "the CUDA forward pass");
    for (KvPolicy* p : policies) {
      if (st.ok()) st = p->store()->error();
    }
    if (st.ok()) {
      for (KvPolicy* p : policies) p->end_batch(pool_);
      return absl::OkStatus();
    }
    // The device state of these contexts is no longer known: start them afresh.
    for (KvPolicy* p : policies) p->reset();
    // Out of memory leaves the device usable. Any other error that a fresh synchronisation still
    // reports is sticky: every later call on this device would fail with it.
    (void)cudaGetLastError();
    if (st.code() != absl::StatusCode::kResourceExhausted && cudaStreamSynchronize(stream_) != cudaSuccess) {
      std::lock_guard<std::mutex> lock(failure_mu_);
      if (failure_.ok()) failure_ = st;
    }
    return st;
  }

 public:
  Status failure() const override {
    std::lock_guard<std::mutex> lock(failure_mu_);
    return failure_;
  }

 private:
  // The pass's steps on this device (engine/backend/llama_pass.h).
  struct Ops {
    using Error = cudaError_t;
    static bool ok(cudaError_t e) { return e == cudaSuccess; }
    struct Matmul {
      const DeviceWeight& w;
      const DeviceVector* bias;
      const float* in;
      float* out;
    };

    CudaBackend& be;
    std::span<KvPolicy* const> policies;
    bool per_token;
    float* host_logits;

    cudaError_t embed(int64_t n) {
      const Activations& a = be.act_;
      return kcu::embed_forward(
          {be.embd_.device, be.embd_.view.type, be.embd_.view.row_bytes, a.tokens, a.x, n, be.model_.config().n_embd},
          be.stream_);
    }
    const DeviceLayer& layer(int il) const { return be.layers_[size_t(il)]; }
    static const DeviceVector* bias(const DeviceVector& v) { return v.data != nullptr ? &v : nullptr; }
    cudaError_t rmsnorm(const float* x, const DeviceVector& weight, float* out, int64_t n) {
      return be.rmsnorm(x, weight, out, n);
    }
    cudaError_t matmuls(std::initializer_list<Matmul> ms, int64_t n) {
      for (const Matmul& m : ms) EDGEINF_CUDA_TRY(be.matmul(m.w, m.in, m.out, n, m.bias, per_token));
      return cudaSuccess;
    }
    cudaError_t attend(int il, int64_t n) {
      const Activations& a = be.act_;
      // The stores queue their steps on the stream and keep their own errors (checked in run()).
      if (policies.size() == 1) {
        policies[0]->attend({il, n, a.q, a.k, a.v, a.attn}, be.pool_);
        return cudaSuccess;
      }
      const int64_t q_dim = be.shape_.q_dim(), kv_dim = be.shape_.kv_dim();
      for (int64_t t = 0; t < n; ++t) {
        policies[size_t(t)]->attend({il, 1, a.q + t * q_dim, a.k + t * kv_dim, a.v + t * kv_dim, a.attn + t * q_dim},
                                    be.pool_);
      }
      return cudaSuccess;
    }
    cudaError_t add(float* x, const float* y, int64_t n) { return kcu::add_forward({x, y, n}, be.stream_); }
    cudaError_t swiglu(float* gate, const float* up, int64_t n) {
      const int64_t n_ff = be.model_.config().n_ff;
      return kcu::swiglu_forward({gate, up, gate, n_ff, n, n_ff}, be.stream_);
    }
    cudaError_t logits(int64_t first, int64_t n_out) {
      const Activations& a = be.act_;
      const LlamaConfig& c = be.model_.config();
      EDGEINF_CUDA_TRY(be.rmsnorm(a.x + first * c.n_embd, be.output_norm_, a.xn, n_out));
      EDGEINF_CUDA_TRY(be.matmul(be.output_, a.xn, a.logits, n_out, nullptr, per_token));
      return cudaMemcpyAsync(host_logits, a.logits, size_t(n_out * c.n_vocab) * sizeof(float), cudaMemcpyDeviceToHost,
                             be.stream_);
    }
  };

  cudaError_t run_device(std::span<const TokenId> tokens, std::span<KvPolicy* const> policies, bool per_token,
                         int64_t first, float* logits) {
    const Activations& a = act_;
    const int64_t n = int64_t(tokens.size());
    EDGEINF_CUDA_TRY(
        cudaMemcpyAsync(a.tokens, tokens.data(), size_t(n) * sizeof(int32_t), cudaMemcpyHostToDevice, stream_));
    Ops ops{*this, policies, per_token, logits};
    const PassBuffers b{a.x, a.xn, a.q, a.k, a.v, a.attn, a.gate, a.up};
    EDGEINF_CUDA_TRY(run_llama_pass(ops, model_.config(), b, n, first));
    return cudaStreamSynchronize(stream_);
  }

  const LlamaModel& model_;
  AttentionShape shape_, device_shape_;
  std::string describe_;
  cudaStream_t stream_ = nullptr;
  const kcu::CublasApi* blas_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  DeviceArena weights_, activations_;
  DeviceWeight embd_, output_;
  DeviceVector output_norm_, freq_factors_;
  std::vector<DeviceLayer> layers_;
  size_t w_scratch_floats_ = 0;
  std::mutex mu_;  // one forward pass at a time: the activations are shared
  mutable std::mutex failure_mu_;
  Status failure_;  // a sticky device error, once one happened
  Activations act_{};
  kernels::cpu::ThreadPool pool_{1};  // what KvPolicy::attend takes; a device store runs nothing on it
  int64_t act_tokens_ = 0;
  float* w_scratch_ = nullptr;
};

}  // namespace
}  // namespace cuda_backend

StatusOr<std::unique_ptr<ModelBackend>> make_cuda_backend(const LlamaModel& model) {
  auto backend = std::make_unique<cuda_backend::CudaBackend>(model);
  EDGEINF_RETURN_IF_ERROR(backend->init());
  return std::unique_ptr<ModelBackend>(std::move(backend));
}

}  // namespace edgeinf
