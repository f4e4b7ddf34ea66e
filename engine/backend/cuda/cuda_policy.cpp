// The device twins of the full, streaming and edgeinfinite policies; see cuda_policy.h. Each
// mirrors its CPU policy step for step (engine/kv/full_policy.cpp, sink_window_cache.cpp,
// edgeinfinite_policy.cpp) on the kernels of kernels/cuda.
#include "engine/backend/cuda/cuda_policy.h"

#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/kv/kv_common.h"
#include "engine/kv/memory_gate.h"
#include "engine/kv/sink_window_cache.h"
#include "kernels/common/linear_memory.h"
#include "kernels/cuda/arena.h"
#include "kernels/cuda/ops.h"

namespace edgeinf::cuda_backend {

namespace kcu = kernels::cuda;
using kcu::ArenaLayout;
using kcu::DeviceArena;

Status cuda_status(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return absl::OkStatus();
  if (e == cudaErrorMemoryAllocation) {
    return absl::ResourceExhaustedError(absl::StrCat(what, ": ", cudaGetErrorString(e)));
  }
  return absl::InternalError(absl::StrCat(what, ": CUDA error: ", cudaGetErrorString(e)));
}

namespace {

template <typename T>
cudaError_t copy_d2d(T* dst, const T* src, int64_t n, cudaStream_t st) {
  return cudaMemcpyAsync(dst, src, size_t(n) * sizeof(T), cudaMemcpyDeviceToDevice, st);
}

// Copies for save/restore and set-up, complete when they return. Pageable host memory.
template <typename T>
cudaError_t download(T* host, const T* dev, int64_t n, cudaStream_t st) {
  EDGEINF_CUDA_TRY(cudaMemcpyAsync(host, dev, size_t(n) * sizeof(T), cudaMemcpyDeviceToHost, st));
  return cudaStreamSynchronize(st);
}
template <typename T>
cudaError_t upload(T* dev, const T* host, int64_t n, cudaStream_t st) {
  EDGEINF_CUDA_TRY(cudaMemcpyAsync(dev, host, size_t(n) * sizeof(T), cudaMemcpyHostToDevice, st));
  return cudaStreamSynchronize(st);
}

// One layer's device array into the snapshot, through a host staging vector.
Status save_array(ByteWriter& w, const float* dev, int64_t n, std::vector<float>& stage, cudaStream_t st) {
  stage.resize(size_t(n));
  EDGEINF_RETURN_IF_ERROR(cuda_status(download(stage.data(), dev, n, st), "reading session state from the device"));
  w.put_array(stage.data(), stage.size());
  return absl::OkStatus();
}

Status restore_array(ByteReader& r, float* dev, int64_t n, std::vector<float>& stage, cudaStream_t st) {
  stage.resize(size_t(n));
  EDGEINF_RETURN_IF_ERROR(r.get_array(stage.data(), stage.size()));
  return cuda_status(upload(dev, stage.data(), n, st), "writing session state to the device");
}

// The device form of save_kv_layers / restore_kv_layers (engine/kv/kv_common.h).
Status save_kv_layers(ByteWriter& w, const std::vector<float*>& k, const std::vector<float*>& v, int64_t n,
                      std::vector<float>& stage, cudaStream_t st) {
  for (size_t il = 0; il < k.size(); ++il) {
    EDGEINF_RETURN_IF_ERROR(save_array(w, k[il], n, stage, st));
    EDGEINF_RETURN_IF_ERROR(save_array(w, v[il], n, stage, st));
  }
  return absl::OkStatus();
}

Status restore_kv_layers(ByteReader& r, const std::vector<float*>& k, const std::vector<float*>& v, int64_t n,
                         std::vector<float>& stage, cudaStream_t st) {
  for (size_t il = 0; il < k.size(); ++il) {
    EDGEINF_RETURN_IF_ERROR(restore_array(r, k[il], n, stage, st));
    EDGEINF_RETURN_IF_ERROR(restore_array(r, v[il], n, stage, st));
  }
  return absl::OkStatus();
}

cudaError_t rotate(const AttentionShape& s, float* x, int64_t stride, int n_head, const int32_t* positions,
                   int64_t n_tok, cudaStream_t st) {
  return kcu::rope_forward(rope_params(s, x, stride, n_head, positions, n_tok), st);
}

// The device form of rotate_store_attend (engine/kv/kv_common.h).
cudaError_t rotate_store_attend(const AttentionShape& s, const LayerAttention& a, const int32_t* positions,
                                float* k_cache, float* v_cache, int64_t base, cudaStream_t st) {
  EDGEINF_CUDA_TRY(rotate(s, a.q, s.q_dim(), s.n_head, positions, a.n_tok, st));
  EDGEINF_CUDA_TRY(rotate(s, a.k, s.kv_dim(), s.n_kv_head, positions, a.n_tok, st));
  EDGEINF_CUDA_TRY(copy_d2d(k_cache + base * s.kv_dim(), a.k, a.n_tok * s.kv_dim(), st));
  EDGEINF_CUDA_TRY(copy_d2d(v_cache + base * s.kv_dim(), a.v, a.n_tok * s.kv_dim(), st));
  return kcu::attention_forward(cache_attention_params(s, a, k_cache, v_cache, base), st);
}

// Sizes the policy's arena from its layout, reserves it, takes the pieces and initialises them.
template <typename P>
StatusOr<std::unique_ptr<CudaPolicy>> place(std::unique_ptr<P> p) {
  ArenaLayout sizing(nullptr);
  p->layout(sizing);
  std::string why;
  if (!p->arena().reserve(sizing.bytes(), &why)) {
    return absl::ResourceExhaustedError(
        absl::StrCat("no device memory for a ", p->name(), " session (", sizing.bytes() >> 20, " MiB): ", why));
  }
  ArenaLayout taking(&p->arena());
  p->layout(taking);
  EDGEINF_RETURN_IF_ERROR(p->init());
  return std::unique_ptr<CudaPolicy>(std::move(p));
}

// ---- full -------------------------------------------------------------------------------------

class CudaFullPolicy final : public CudaPolicy {
 public:
  CudaFullPolicy(const AttentionShape& s, int64_t capacity, cudaStream_t st) : s_(s), c_{capacity}, st_(st) {}

  void layout(ArenaLayout& l) {
    k_.assign(size_t(s_.n_layer), nullptr);
    v_.assign(size_t(s_.n_layer), nullptr);
    for (int il = 0; il < s_.n_layer; ++il) {
      k_[size_t(il)] = l.take<float>(size_t(c_.capacity * s_.kv_dim()));
      v_[size_t(il)] = l.take<float>(size_t(c_.capacity * s_.kv_dim()));
    }
    pos_ = l.take<int32_t>(size_t(c_.capacity));
  }
  DeviceArena& arena() { return arena_; }
  Status init() { return absl::OkStatus(); }

  const char* name() const override { return "full"; }
  int64_t max_batch() const override { return c_.capacity; }
  int64_t capacity() const override { return c_.capacity; }

  Status begin_batch(int64_t n_tok) override {
    EDGEINF_RETURN_IF_ERROR(c_.plan(n_tok));
    return cuda_status(
        cudaMemcpyAsync(pos_, c_.positions.data(), c_.positions.size() * sizeof(int32_t), cudaMemcpyHostToDevice, st_),
        "uploading positions");
  }

  cudaError_t attend_on_device(const LayerAttention& a) override {
    return rotate_store_attend(s_, a, pos_, k_[size_t(a.layer)], v_[size_t(a.layer)], c_.n_seen, st_);
  }
  void commit() override { c_.commit(); }
  void reset() override {
    c_.reset();
    error_ = cudaSuccess;
  }
  int64_t n_seen() const override { return c_.n_seen; }
  int64_t n_kept() const override { return c_.n_seen; }
  int64_t n_compressed() const override { return 0; }
  size_t state_bytes() const override {
    return 2 * size_t(s_.n_layer) * size_t(c_.capacity * s_.kv_dim()) * sizeof(float);
  }

  // The bytes of FullPolicy::save / restore.
  Status save(ByteWriter& w) const override {
    c_.save(w);
    return save_kv_layers(w, k_, v_, c_.n_seen * s_.kv_dim(), stage_, st_);
  }

  Status restore(ByteReader& r) override {
    reset();
    EDGEINF_RETURN_IF_ERROR(c_.restore(r));
    const Status st = restore_kv_layers(r, k_, v_, c_.n_seen * s_.kv_dim(), stage_, st_);
    if (!st.ok()) c_.reset();
    return st;
  }

 private:
  AttentionShape s_;
  FullKvCounters c_;
  cudaStream_t st_;
  DeviceArena arena_;
  std::vector<float*> k_, v_;  // per layer [capacity, kv_dim], rotated K
  int32_t* pos_ = nullptr;
  mutable std::vector<float> stage_;
};

// ---- sink + window (streaming, edgeinfinite) --------------------------------------------------

// The device form of SinkWindowCache: the same counters and plan, positions and shifting, on
// device arrays.
class DeviceSinkWindow {
 public:
  DeviceSinkWindow(const AttentionShape& s, int sink, int window, int segment, cudaStream_t st)
      : s_(s), c_{sink, window, segment}, st_(st) {}

  void layout(ArenaLayout& l) {
    k_.assign(size_t(s_.n_layer), nullptr);
    v_.assign(size_t(s_.n_layer), nullptr);
    for (int il = 0; il < s_.n_layer; ++il) {
      k_[size_t(il)] = l.take<float>(size_t(capacity() * s_.kv_dim()));
      v_[size_t(il)] = l.take<float>(size_t(capacity() * s_.kv_dim()));
    }
    shift_scratch_ = l.take<float>(size_t(capacity() * s_.kv_dim()));
    pos_ = l.take<int32_t>(size_t(2 * c_.segment + capacity()));
  }

  int64_t capacity() const { return c_.capacity(); }
  int64_t segment() const { return c_.segment; }
  int64_t n_cached() const { return c_.n_cached; }
  int64_t n_seen() const { return c_.n_seen; }
  int64_t n_left() const { return c_.n_left; }
  int64_t n_leaving() const { return c_.n_leaving; }
  size_t bytes() const { return 2 * size_t(s_.n_layer) * size_t(capacity() * s_.kv_dim()) * sizeof(float); }

  // The counters' plan, then the positions go to the device: [0, segment) the batch's,
  // [segment, 2 segment) minus each leaving entry's, [2 segment, ...) minus n_leaving for the rest.
  cudaError_t plan(int64_t n_tok) {
    c_.plan(n_tok);
    const int64_t seg = c_.segment, n_leaving = c_.n_leaving;
    const int64_t n_rest = n_leaving > 0 ? c_.n_cached - c_.sink - n_leaving : 0;
    pos_host_.assign(size_t(2 * seg + n_rest), 0);
    for (int64_t t = 0; t < n_tok; ++t) pos_host_[size_t(t)] = int32_t(c_.n_cached - n_leaving + t);
    for (int64_t i = 0; i < n_leaving; ++i) pos_host_[size_t(seg + i)] = -int32_t(c_.sink + i);
    for (int64_t i = 0; i < n_rest; ++i) pos_host_[size_t(2 * seg + i)] = -int32_t(n_leaving);
    return cudaMemcpyAsync(pos_, pos_host_.data(), pos_host_.size() * sizeof(int32_t), cudaMemcpyHostToDevice, st_);
  }

  // SinkWindowCache::evict: the leaving entries (un-rotated K, and V) to k_out / v_out when not
  // null, then the rest of the window shifts down (through the scratch) and is re-rotated.
  cudaError_t evict(int layer, float* k_out, float* v_out) {
    const int64_t n_leaving = c_.n_leaving, sink = c_.sink;
    if (n_leaving == 0) return cudaSuccess;
    const int64_t kv_dim = s_.kv_dim();
    float* k_leave = k_[size_t(layer)] + sink * kv_dim;
    float* v_leave = v_[size_t(layer)] + sink * kv_dim;
    if (k_out != nullptr) {
      EDGEINF_CUDA_TRY(copy_d2d(k_out, k_leave, n_leaving * kv_dim, st_));
      EDGEINF_CUDA_TRY(rotate(s_, k_out, kv_dim, s_.n_kv_head, pos_ + c_.segment, n_leaving, st_));
    }
    if (v_out != nullptr) EDGEINF_CUDA_TRY(copy_d2d(v_out, v_leave, n_leaving * kv_dim, st_));
    const int64_t n_rest = c_.n_cached - sink - n_leaving;
    if (n_rest == 0) return cudaSuccess;
    for (float* base : {k_leave, v_leave}) {
      EDGEINF_CUDA_TRY(copy_d2d(shift_scratch_, base + n_leaving * kv_dim, n_rest * kv_dim, st_));
      EDGEINF_CUDA_TRY(copy_d2d(base, static_cast<const float*>(shift_scratch_), n_rest * kv_dim, st_));
    }
    return rotate(s_, k_leave, kv_dim, s_.n_kv_head, pos_ + 2 * c_.segment, n_rest, st_);
  }

  cudaError_t attend(const LayerAttention& a) {
    EDGEINF_CHECK(a.n_tok == c_.n_planned);
    return rotate_store_attend(s_, a, pos_, k_[size_t(a.layer)], v_[size_t(a.layer)], c_.n_cached - c_.n_leaving, st_);
  }

  void commit() { c_.commit(); }
  void reset() { c_.reset(); }

  // The bytes of SinkWindowCache::save / restore.
  Status save(ByteWriter& w) const {
    c_.save(w);
    return save_kv_layers(w, k_, v_, c_.n_cached * s_.kv_dim(), stage_, st_);
  }

  Status restore(ByteReader& r) {
    EDGEINF_RETURN_IF_ERROR(c_.restore(r));
    const Status st = restore_kv_layers(r, k_, v_, c_.n_cached * s_.kv_dim(), stage_, st_);
    if (!st.ok()) c_.reset();
    return st;
  }

 private:
  AttentionShape s_;
  SinkWindowCounters c_;
  cudaStream_t st_;
  std::vector<float*> k_, v_;  // per layer [capacity, kv_dim]
  float* shift_scratch_ = nullptr;
  int32_t* pos_ = nullptr;
  std::vector<int32_t> pos_host_;
  mutable std::vector<float> stage_;
};

class CudaStreamingPolicy final : public CudaPolicy {
 public:
  CudaStreamingPolicy(const AttentionShape& s, const KvPolicyOptions& o, cudaStream_t st)
      : cache_(s, o.sink, o.window, o.segment, st) {}
  void layout(ArenaLayout& l) { cache_.layout(l); }
  DeviceArena& arena() { return arena_; }
  Status init() { return absl::OkStatus(); }

  const char* name() const override { return "streaming"; }
  int64_t max_batch() const override { return cache_.segment(); }
  Status begin_batch(int64_t n_tok) override { return cuda_status(cache_.plan(n_tok), "uploading positions"); }
  cudaError_t attend_on_device(const LayerAttention& a) override {
    EDGEINF_CUDA_TRY(cache_.evict(a.layer, nullptr, nullptr));
    return cache_.attend(a);
  }
  void commit() override { cache_.commit(); }
  void reset() override {
    cache_.reset();
    error_ = cudaSuccess;
  }
  int64_t n_seen() const override { return cache_.n_seen(); }
  int64_t n_kept() const override { return cache_.n_cached(); }
  int64_t n_compressed() const override { return cache_.n_left(); }
  size_t state_bytes() const override { return cache_.bytes(); }
  Status save(ByteWriter& w) const override { return cache_.save(w); }
  Status restore(ByteReader& r) override { return cache_.restore(r); }

 private:
  DeviceArena arena_;
  DeviceSinkWindow cache_;
};

// ---- edgeinfinite -----------------------------------------------------------------------------

class CudaEdgeInfinitePolicy final : public CudaPolicy {
 public:
  CudaEdgeInfinitePolicy(const AttentionShape& s, const KvPolicyOptions& o, cudaStream_t st)
      : s_(s),
        cache_(s, o.sink, o.window, o.segment, st),
        delta_(o.update == MemoryUpdate::kDelta),
        gate_(o.gate),
        segment_(o.segment),
        st_(st) {}

  void layout(ArenaLayout& l) {
    cache_.layout(l);
    const size_t d = size_t(s_.head_dim), n_layer = size_t(s_.n_layer);
    m_.assign(n_layer, nullptr);
    z_.assign(n_layer, nullptr);
    gate_w_.assign(n_layer, nullptr);
    gate_g_.assign(n_layer, nullptr);
    for (size_t il = 0; il < n_layer; ++il) {
      m_[il] = l.take<float>(size_t(s_.n_kv_head) * d * d);
      z_[il] = l.take<float>(size_t(s_.n_kv_head) * d);
      if (gate_ == nullptr) continue;
      if (gate_->config().kind == GateKind::kLinear) {
        gate_w_[il] = l.take<float>(size_t(s_.n_head) * 2 * size_t(s_.q_dim()));
        gate_g_[il] = l.take<float>(size_t(s_.n_head));  // the bias
      } else {
        gate_g_[il] = l.take<float>(size_t(segment_ * s_.n_head));  // sigmoid(beta) for every row
      }
    }
    const size_t seg = size_t(segment_);
    k_leave_ = l.take<float>(seg * size_t(s_.kv_dim()));
    v_leave_ = l.take<float>(seg * size_t(s_.kv_dim()));
    retrieval_ = l.take<float>(seg * size_t(s_.kv_dim()));
    a_mem_ = l.take<float>(seg * size_t(s_.q_dim()));  // the linear gate's A_mem, the scalar gate's pre-RoPE q
    g_ = l.take<float>(seg * size_t(s_.n_head));
  }
  DeviceArena& arena() { return arena_; }

  // Zeroes the memory and copies the gate's parameters.
  Status init() {
    reset();
    EDGEINF_RETURN_IF_ERROR(cuda_status(error_, "clearing the compressed memory"));
    if (gate_ == nullptr) return absl::OkStatus();
    if (gate_->n_layer() != s_.n_layer) {
      return absl::InvalidArgumentError(
          absl::StrCat("the gate has ", gate_->n_layer(), " layers, the model ", s_.n_layer));
    }
    std::vector<float> table;
    for (int il = 0; il < s_.n_layer; ++il) {
      const std::vector<float>& b = gate_->bias(il);
      cudaError_t e = cudaSuccess;
      if (gate_->config().kind == GateKind::kLinear) {
        const std::vector<float>& w = gate_->weight(il);
        e = upload(gate_w_[size_t(il)], w.data(), int64_t(w.size()), st_);
        if (e == cudaSuccess) e = upload(gate_g_[size_t(il)], b.data(), int64_t(b.size()), st_);
      } else {
        // The scalar gate's value per head, as MemoryGate::compute gives it, repeated for every row.
        table.resize(size_t(segment_ * s_.n_head));
        for (size_t i = 0; i < table.size(); ++i) table[i] = kernels::sigmoid(b[i % size_t(s_.n_head)]);
        e = upload(gate_g_[size_t(il)], table.data(), int64_t(table.size()), st_);
      }
      EDGEINF_RETURN_IF_ERROR(cuda_status(e, "copying the memory gate to the device"));
    }
    return absl::OkStatus();
  }

  const char* name() const override { return "edgeinfinite"; }
  int64_t max_batch() const override { return cache_.segment(); }
  Status begin_batch(int64_t n_tok) override { return cuda_status(cache_.plan(n_tok), "uploading positions"); }

  // EdgeInfinitePolicy::attend: fold, read the memory with pre-RoPE q, attend locally, blend.
  cudaError_t attend_on_device(const LayerAttention& a) override {
    const size_t il = size_t(a.layer);
    EDGEINF_CUDA_TRY(fold(a.layer));
    const bool has_memory = cache_.n_left() + cache_.n_leaving() > 0;
    if (gate_ == nullptr || !has_memory) return cache_.attend(a);
    const bool linear = gate_->config().kind == GateKind::kLinear;
    if (linear) {
      EDGEINF_CUDA_TRY(kcu::memory_decompress(memory_decompress_params(s_, m_[il], z_[il], a.q, a_mem_, a.n_tok), st_));
    } else {
      EDGEINF_CUDA_TRY(copy_d2d(a_mem_, static_cast<const float*>(a.q), a.n_tok * s_.q_dim(), st_));
    }
    EDGEINF_CUDA_TRY(cache_.attend(a));
    if (linear) {
      kernels::GateLinearParams gp{gate_w_[il], gate_g_[il], a_mem_,    a.out,      s_.q_dim(),
                                   g_,          a.n_tok,     s_.n_head, s_.head_dim};
      EDGEINF_CUDA_TRY(kcu::gate_linear_forward(gp, st_));
      kernels::GateBlendParams bp{g_, a_mem_, a.out, a.out, s_.q_dim(), a.n_tok, s_.n_head, s_.head_dim};
      return kcu::gate_blend_forward(bp, st_);
    }
    // Scalar gate: the memory read fused with the blend, from the saved pre-RoPE q.
    kernels::MemoryReadBlendParams p;
    p.m = m_[il];
    p.z = z_[il];
    p.q = a_mem_;
    p.q_stride = s_.q_dim();
    p.gate = gate_g_[il];
    p.a_local = a.out;
    p.out = a.out;
    p.stride = s_.q_dim();
    p.n_tok = a.n_tok;
    p.n_head = s_.n_head;
    p.n_kv_head = s_.n_kv_head;
    p.head_dim = s_.head_dim;
    return kcu::memory_read_blend(p, st_);
  }

  void commit() override { cache_.commit(); }
  void reset() override {
    cache_.reset();
    error_ = cudaSuccess;
    const size_t d = size_t(s_.head_dim);
    for (size_t il = 0; il < m_.size() && error_ == cudaSuccess; ++il) {
      error_ = cudaMemsetAsync(m_[il], 0, size_t(s_.n_kv_head) * d * d * sizeof(float), st_);
      if (error_ == cudaSuccess) error_ = cudaMemsetAsync(z_[il], 0, size_t(s_.n_kv_head) * d * sizeof(float), st_);
    }
  }
  int64_t n_seen() const override { return cache_.n_seen(); }
  int64_t n_kept() const override { return cache_.n_cached(); }
  int64_t n_compressed() const override { return cache_.n_left(); }
  size_t state_bytes() const override {
    const size_t d = size_t(s_.head_dim);
    return cache_.bytes() + size_t(s_.n_layer) * size_t(s_.n_kv_head) * (d * d + d) * sizeof(float);
  }

  // The bytes of EdgeInfinitePolicy::save / restore.
  Status save(ByteWriter& w) const override {
    EDGEINF_RETURN_IF_ERROR(cache_.save(w));
    w.put<uint8_t>(delta_ ? 1 : 0);
    const int64_t d = s_.head_dim;
    for (size_t il = 0; il < m_.size(); ++il) {
      EDGEINF_RETURN_IF_ERROR(save_array(w, m_[il], s_.n_kv_head * d * d, stage_, st_));
      EDGEINF_RETURN_IF_ERROR(save_array(w, z_[il], s_.n_kv_head * d, stage_, st_));
    }
    return absl::OkStatus();
  }

  Status restore(ByteReader& r) override {
    reset();
    Status st = [&]() -> Status {
      EDGEINF_RETURN_IF_ERROR(cuda_status(error_, "clearing the compressed memory"));
      EDGEINF_RETURN_IF_ERROR(cache_.restore(r));
      EDGEINF_RETURN_IF_ERROR(r.expect<uint8_t>(delta_ ? 1 : 0, "memory update rule (1 = delta)"));
      const int64_t d = s_.head_dim;
      for (size_t il = 0; il < m_.size(); ++il) {
        EDGEINF_RETURN_IF_ERROR(restore_array(r, m_[il], s_.n_kv_head * d * d, stage_, st_));
        EDGEINF_RETURN_IF_ERROR(restore_array(r, z_[il], s_.n_kv_head * d, stage_, st_));
      }
      return absl::OkStatus();
    }();
    if (!st.ok()) reset();
    return st;
  }

 private:
  // EdgeInfinitePolicy::fold: the planned leaving tokens of a layer go into its memory.
  cudaError_t fold(int layer) {
    const int64_t n_leaving = cache_.n_leaving();
    EDGEINF_CUDA_TRY(cache_.evict(layer, k_leave_, v_leave_));
    if (n_leaving == 0) return cudaSuccess;
    return kcu::memory_compress(
        memory_compress_params(s_, m_[size_t(layer)], z_[size_t(layer)], k_leave_, v_leave_, n_leaving, delta_),
        retrieval_, st_);
  }

  AttentionShape s_;
  DeviceArena arena_;
  DeviceSinkWindow cache_;
  bool delta_;
  const MemoryGate* gate_;
  int64_t segment_;
  cudaStream_t st_;
  std::vector<float*> m_, z_;            // per layer [n_kv_head, d, d] and [n_kv_head, d]
  std::vector<float*> gate_w_, gate_g_;  // linear: weight and bias; scalar: gate values per row
  float *k_leave_ = nullptr, *v_leave_ = nullptr, *retrieval_ = nullptr, *a_mem_ = nullptr, *g_ = nullptr;
  mutable std::vector<float> stage_;
};

}  // namespace

StatusOr<std::unique_ptr<CudaPolicy>> make_cuda_policy(const KvPolicyOptions& o, const AttentionShape& s,
                                                       cudaStream_t stream) {
  EDGEINF_RETURN_IF_ERROR(validate_kv_options(o, s));
  const KvPolicyTraits& traits = kv_policy_traits(o.name);
  if (!traits.device_form) {
    return absl::InvalidArgumentError(
        absl::StrCat("the ", o.name, " policy runs on the CPU only (--device cpu); on cuda: ",
                     absl::StrJoin(kv_policy_names([](const KvPolicyTraits& t) { return t.device_form; }), ", ")));
  }
  if (traits.keeps_everything) {
    return place(std::make_unique<CudaFullPolicy>(s, o.n_ctx > 0 ? o.n_ctx : s.n_ctx_train, stream));
  }
  EDGEINF_CHECK(traits.sink_window);
  if (traits.compresses) return place(std::make_unique<CudaEdgeInfinitePolicy>(s, o, stream));
  return place(std::make_unique<CudaStreamingPolicy>(s, o, stream));
}

}  // namespace edgeinf::cuda_backend
