// The KV store on a CUDA device; see cuda_kv_store.h.
#include "engine/backend/cuda/cuda_kv_store.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/kv/kv_common.h"
#include "engine/kv/memory_gate.h"
#include "kernels/common/kv_rows.h"
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

// Copies for snapshots and set-up, complete when they return. Pageable host memory.
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

class CudaKvStore final : public KvStore {
 public:
  CudaKvStore(const AttentionShape& s, const KvStoreShape& shape, cudaStream_t st)
      : s_(s), shape_(shape), st_(st), row_bytes_(kernels::kv_value_offset(shape.type, s.kv_dim())) {}

  // Takes the arrays from the layout (first to size the arena, then from it).
  void layout(ArenaLayout& l) {
    const size_t n_layer = size_t(s_.n_layer), rows = size_t(shape_.rows), kv_dim = size_t(s_.kv_dim());
    const size_t seg = size_t(shape_.segment), d = size_t(s_.head_dim);
    k_.assign(n_layer, nullptr);
    v_.assign(n_layer, nullptr);
    for (size_t il = 0; il < n_layer; ++il) {
      k_[il] = l.take<uint8_t>(rows * row_bytes_);
      v_[il] = l.take<uint8_t>(rows * row_bytes_);
    }
    // Rows only move when some leave: their bytes, or an encoded store's keys being re-rotated.
    if (shape_.segment > 0) shift_scratch_ = l.take<float>(rows * kv_dim);
    pos_ = l.take<int32_t>(2 * rows + seg);  // at most: a batch, the leaving rows, the rest
    if (!shape_.memory) return;
    const MemoryGate* gate = shape_.gate;
    m_.assign(n_layer, nullptr);
    z_.assign(n_layer, nullptr);
    gate_w_.assign(n_layer, nullptr);
    gate_g_.assign(n_layer, nullptr);
    gate_q_.assign(n_layer, nullptr);
    for (size_t il = 0; il < n_layer; ++il) {
      m_[il] = l.take<float>(size_t(s_.n_kv_head) * d * d);
      z_[il] = l.take<float>(size_t(s_.n_kv_head) * d);
      if (gate == nullptr) continue;
      if (gate->config().kind == GateKind::kLinear) {
        gate_w_[il] = l.take<float>(size_t(s_.n_head) * 2 * size_t(s_.q_dim()));
        gate_g_[il] = l.take<float>(size_t(s_.n_head));  // the bias
      } else {
        gate_g_[il] = l.take<float>(seg * size_t(s_.n_head));  // sigmoid(beta) for every row
      }
      if (gate->has_query_projection()) gate_q_[il] = l.take<float>(size_t(s_.n_head) * d * d);
    }
    k_leave_ = l.take<float>(seg * kv_dim);
    v_leave_ = l.take<float>(seg * kv_dim);
    retrieval_ = l.take<float>(seg * kv_dim);
    read_ = l.take<float>(seg * size_t(s_.q_dim()));  // the linear gate's read-out, the scalar gate's pre-RoPE q
    g_ = l.take<float>(seg * size_t(s_.n_head));
    // The linear gate's projected queries (the scalar gate's are read_).
    if (gate != nullptr && gate->has_query_projection() && gate->config().kind == GateKind::kLinear) {
      q_mem_ = l.take<float>(seg * size_t(s_.q_dim()));
    }
  }
  DeviceArena& arena() { return arena_; }

  // Zeroes the memory and copies the gate's parameters.
  Status init() {
    reset();
    EDGEINF_RETURN_IF_ERROR(cuda_status(error_, "clearing the compressed memory"));
    const MemoryGate* gate = shape_.gate;
    if (!shape_.memory || gate == nullptr) return absl::OkStatus();
    if (gate->n_layer() != s_.n_layer) {
      return absl::InvalidArgumentError(
          absl::StrCat("the gate has ", gate->n_layer(), " layers, the model ", s_.n_layer));
    }
    std::vector<float> table;
    for (int il = 0; il < s_.n_layer; ++il) {
      const std::vector<float>& b = gate->bias(il);
      cudaError_t e = cudaSuccess;
      if (gate->config().kind == GateKind::kLinear) {
        const std::vector<float>& w = gate->weight(il);
        e = upload(gate_w_[size_t(il)], w.data(), int64_t(w.size()), st_);
        if (e == cudaSuccess) e = upload(gate_g_[size_t(il)], b.data(), int64_t(b.size()), st_);
      } else {
        // The scalar gate's value per head (what MemoryGate::compute gives), for every row.
        table.resize(size_t(shape_.segment * s_.n_head));
        for (size_t i = 0; i < table.size(); ++i) table[i] = kernels::sigmoid(b[i % size_t(s_.n_head)]);
        e = upload(gate_g_[size_t(il)], table.data(), int64_t(table.size()), st_);
      }
      if (e == cudaSuccess && gate->has_query_projection()) {
        const std::vector<float>& q = gate->query(il);
        e = upload(gate_q_[size_t(il)], q.data(), int64_t(q.size()), st_);
      }
      EDGEINF_RETURN_IF_ERROR(cuda_status(e, "copying the memory gate to the device"));
    }
    return absl::OkStatus();
  }

  const char* device() const override { return "cuda"; }
  void reserve(int64_t n) override { EDGEINF_CHECK(n <= shape_.rows); }
  size_t row_bytes() const override { return row_bytes_; }
  size_t bytes() const override { return max_bytes(); }
  size_t max_bytes() const override {
    return 2 * size_t(s_.n_layer) * size_t(shape_.rows) * row_bytes_ + memory_bytes();
  }
  size_t memory_bytes() const override {
    if (!shape_.memory) return 0;
    const size_t d = size_t(s_.head_dim);
    return size_t(s_.n_layer) * size_t(s_.n_kv_head) * (d * d + d) * sizeof(float);
  }

  // The three spans go to the device in one copy.
  void set_positions(const RowPositions& p) override {
    EDGEINF_CHECK(int64_t(p.batch.size() + p.rest.size()) <= 2 * shape_.rows &&
                  int64_t(p.leaving.size()) <= std::max<int64_t>(shape_.segment, 0));
    host_pos_.assign(p.batch.begin(), p.batch.end());
    host_pos_.insert(host_pos_.end(), p.leaving.begin(), p.leaving.end());
    host_pos_.insert(host_pos_.end(), p.rest.begin(), p.rest.end());
    pos_batch_ = pos_;
    pos_leaving_ = pos_ + p.batch.size();
    pos_rest_ = pos_leaving_ + p.leaving.size();
    run([&] {
      return cudaMemcpyAsync(pos_, host_pos_.data(), host_pos_.size() * sizeof(int32_t), cudaMemcpyHostToDevice, st_);
    });
  }

  void rotate_store_attend(const LayerAttention& a, int64_t base, kernels::cpu::ThreadPool&) override {
    run([&]() -> cudaError_t {
      uint8_t* k_cache = k_[size_t(a.layer)];
      uint8_t* v_cache = v_[size_t(a.layer)];
      const int64_t kv_dim = s_.kv_dim();
      EDGEINF_CUDA_TRY(rotate(a.q, s_.q_dim(), s_.n_head, pos_batch_, a.n_tok));
      EDGEINF_CUDA_TRY(rotate(a.k, kv_dim, s_.n_kv_head, pos_batch_, a.n_tok));
      EDGEINF_CUDA_TRY(kcu::kv_encode(shape_.type, a.k, k_cache + size_t(base) * row_bytes_, a.n_tok * kv_dim, st_));
      EDGEINF_CUDA_TRY(kcu::kv_encode(shape_.type, a.v, v_cache + size_t(base) * row_bytes_, a.n_tok * kv_dim, st_));
      return kcu::attention_forward(cache_attention_params(s_, a, shape_.type, k_cache, v_cache, base), st_);
    });
  }

  // Rows moving down go through the scratch (the copies may overlap); an encoded store's keys are
  // then decoded into it, re-rotated and encoded again.
  void evict(int layer, int64_t first, int64_t n, int64_t end, bool keep, kernels::cpu::ThreadPool&) override {
    run([&]() -> cudaError_t {
      const int64_t kv_dim = s_.kv_dim(), n_rest = end - first - n;
      const size_t rb = row_bytes_;
      uint8_t* k = k_[size_t(layer)] + size_t(first) * rb;
      uint8_t* v = v_[size_t(layer)] + size_t(first) * rb;
      if (keep) {
        EDGEINF_CUDA_TRY(kcu::kv_decode(shape_.type, k, k_leave_, n * kv_dim, st_));
        EDGEINF_CUDA_TRY(rotate(k_leave_, kv_dim, s_.n_kv_head, pos_leaving_, n));
        EDGEINF_CUDA_TRY(kcu::kv_decode(shape_.type, v, v_leave_, n * kv_dim, st_));
      }
      if (n_rest == 0) return cudaSuccess;
      uint8_t* scratch = reinterpret_cast<uint8_t*>(shift_scratch_);
      for (uint8_t* x : {k, v}) {
        EDGEINF_CUDA_TRY(copy_d2d(scratch, x + size_t(n) * rb, int64_t(size_t(n_rest) * rb), st_));
        EDGEINF_CUDA_TRY(copy_d2d(x, scratch, int64_t(size_t(n_rest) * rb), st_));
      }
      if (shape_.type == KvType::kF32) {
        return rotate(reinterpret_cast<float*>(k), kv_dim, s_.n_kv_head, pos_rest_, n_rest);
      }
      EDGEINF_CUDA_TRY(kcu::kv_decode(shape_.type, k, shift_scratch_, n_rest * kv_dim, st_));
      EDGEINF_CUDA_TRY(rotate(shift_scratch_, kv_dim, s_.n_kv_head, pos_rest_, n_rest));
      return kcu::kv_encode(shape_.type, shift_scratch_, k, n_rest * kv_dim, st_);
    });
  }

  void fold(int layer, int64_t n, bool delta, kernels::cpu::ThreadPool&) override {
    run([&] {
      return kcu::memory_compress(
          memory_compress_params(s_, m_[size_t(layer)], z_[size_t(layer)], k_leave_, v_leave_, n, delta), retrieval_,
          st_);
    });
  }

  // The linear gate reads the memory now; the scalar gate keeps the pre-RoPE queries and reads
  // the memory in blend_memory, fused with the blend.
  // With a query projection the memory is read with P q instead of q.
  void read_memory(int layer, const float* q, int64_t n_tok, kernels::cpu::ThreadPool&) override {
    const float* proj = gate_q_.empty() ? nullptr : gate_q_[size_t(layer)];
    run([&]() -> cudaError_t {
      // The queries the memory is read with: projected into their own buffer (linear gate) or
      // into read_ (scalar gate), else q itself.
      float* kept = linear_gate() ? q_mem_ : read_;
      if (proj != nullptr) {
        EDGEINF_CUDA_TRY(
            kcu::head_projection_forward({proj, q, s_.q_dim(), kept, s_.q_dim(), n_tok, s_.n_head, s_.head_dim}, st_));
        q = kept;
      }
      if (linear_gate()) {
        return kcu::memory_decompress(
            memory_decompress_params(s_, m_[size_t(layer)], z_[size_t(layer)], q, read_, n_tok), st_);
      }
      return q == read_ ? cudaSuccess : copy_d2d(read_, q, n_tok * s_.q_dim(), st_);
    });
  }

  void blend_memory(const LayerAttention& a, kernels::cpu::ThreadPool&) override {
    const size_t il = size_t(a.layer);
    run([&]() -> cudaError_t {
      if (linear_gate()) {
        kernels::GateLinearParams gp{gate_w_[il], gate_g_[il], read_,     a.out,      s_.q_dim(),
                                     g_,          a.n_tok,     s_.n_head, s_.head_dim};
        EDGEINF_CUDA_TRY(kcu::gate_linear_forward(gp, st_));
        kernels::GateBlendParams bp{g_, read_, a.out, a.out, s_.q_dim(), a.n_tok, s_.n_head, s_.head_dim};
        return kcu::gate_blend_forward(bp, st_);
      }
      kernels::MemoryReadBlendParams p;
      p.m = m_[il];
      p.z = z_[il];
      p.q = read_;
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
    });
  }

  void reset() override {
    error_ = cudaSuccess;
    const size_t d = size_t(s_.head_dim);
    for (size_t il = 0; il < m_.size(); ++il) {
      run([&] { return cudaMemsetAsync(m_[il], 0, size_t(s_.n_kv_head) * d * d * sizeof(float), st_); });
      run([&] { return cudaMemsetAsync(z_[il], 0, size_t(s_.n_kv_head) * d * sizeof(float), st_); });
    }
  }

  Status save_rows(ByteWriter& w, int64_t first, int64_t last) const override {
    const size_t at = size_t(first) * row_bytes_, n = size_t(last - first) * row_bytes_;
    for (size_t il = 0; il < k_.size(); ++il) {
      EDGEINF_RETURN_IF_ERROR(save_array(w, k_[il] + at, int64_t(n)));
      EDGEINF_RETURN_IF_ERROR(save_array(w, v_[il] + at, int64_t(n)));
    }
    return absl::OkStatus();
  }
  Status load_rows(ByteReader& r, int64_t first, int64_t last) override {
    EDGEINF_CHECK(last <= shape_.rows);
    const size_t at = size_t(first) * row_bytes_, n = size_t(last - first) * row_bytes_;
    for (size_t il = 0; il < k_.size(); ++il) {
      EDGEINF_RETURN_IF_ERROR(load_array(r, k_[il] + at, int64_t(n)));
      EDGEINF_RETURN_IF_ERROR(load_array(r, v_[il] + at, int64_t(n)));
    }
    return absl::OkStatus();
  }
  Status save_memory(ByteWriter& w) const override {
    const int64_t d = s_.head_dim;
    for (size_t il = 0; il < m_.size(); ++il) {
      EDGEINF_RETURN_IF_ERROR(save_array(w, m_[il], s_.n_kv_head * d * d));
      EDGEINF_RETURN_IF_ERROR(save_array(w, z_[il], s_.n_kv_head * d));
    }
    return absl::OkStatus();
  }
  Status load_memory(ByteReader& r) override {
    const int64_t d = s_.head_dim;
    for (size_t il = 0; il < m_.size(); ++il) {
      EDGEINF_RETURN_IF_ERROR(load_array(r, m_[il], s_.n_kv_head * d * d));
      EDGEINF_RETURN_IF_ERROR(load_array(r, z_[il], s_.n_kv_head * d));
    }
    return absl::OkStatus();
  }

  Status error() const override { return cuda_status(error_, "the session's state on the device"); }

 private:
  bool linear_gate() const { return shape_.gate != nullptr && shape_.gate->config().kind == GateKind::kLinear; }
  // Runs a step unless an earlier one failed; keeps the first error.
  template <typename F>
  void run(F&& step) {
    if (error_ == cudaSuccess) error_ = step();
  }
  cudaError_t rotate(float* x, int64_t stride, int n_head, const int32_t* positions, int64_t n_tok) {
    return kcu::rope_forward(rope_params(s_, x, stride, n_head, positions, n_tok), st_);
  }
  // One device array of n elements into the snapshot, and back, through a host staging vector.
  template <typename T>
  Status save_array(ByteWriter& w, const T* dev, int64_t n) const {
    stage_.resize(size_t(n) * sizeof(T));
    T* host = reinterpret_cast<T*>(stage_.data());
    EDGEINF_RETURN_IF_ERROR(cuda_status(download(host, dev, n, st_), "reading session state from the device"));
    w.put_array(stage_.data(), stage_.size());
    return absl::OkStatus();
  }
  template <typename T>
  Status load_array(ByteReader& r, T* dev, int64_t n) {
    stage_.resize(size_t(n) * sizeof(T));
    EDGEINF_RETURN_IF_ERROR(r.get_array(stage_.data(), stage_.size()));
    return cuda_status(upload(dev, reinterpret_cast<const T*>(stage_.data()), n, st_),
                       "writing session state to the device");
  }

  AttentionShape s_;
  KvStoreShape shape_;
  cudaStream_t st_;
  DeviceArena arena_;
  cudaError_t error_ = cudaSuccess;
  size_t row_bytes_;             // one row of K or V in shape_.type
  std::vector<uint8_t*> k_, v_;  // per layer [rows, kv_dim] in shape_.type
  float* shift_scratch_ = nullptr;
  int32_t* pos_ = nullptr;  // the batch's positions, then the leaving rows', then the rest's
  int32_t *pos_batch_ = nullptr, *pos_leaving_ = nullptr, *pos_rest_ = nullptr;
  std::vector<int32_t> host_pos_;
  std::vector<float*> m_, z_;            // per layer [n_kv_head, d, d] and [n_kv_head, d]
  std::vector<float*> gate_w_, gate_g_;  // linear: weight and bias; scalar: gate values per row
  std::vector<float*> gate_q_;           // per layer the query projection [n_head, d, d], or null
  float *k_leave_ = nullptr, *v_leave_ = nullptr, *retrieval_ = nullptr, *read_ = nullptr, *g_ = nullptr;
  float* q_mem_ = nullptr;  // the linear gate's projected queries [segment, q_dim], with a projection
  mutable std::vector<uint8_t> stage_;
};

}  // namespace

StatusOr<std::unique_ptr<KvStore>> make_cuda_kv_store(const AttentionShape& s, const KvStoreShape& shape,
                                                      cudaStream_t stream) {
  auto store = std::make_unique<CudaKvStore>(s, shape, stream);
  ArenaLayout sizing(nullptr);
  store->layout(sizing);
  std::string why;
  if (!store->arena().reserve(sizing.bytes(), &why)) {
    return absl::ResourceExhaustedError(
        absl::StrCat("no device memory for a session's state (", sizing.bytes() >> 20, " MiB): ", why));
  }
  ArenaLayout taking(&store->arena());
  store->layout(taking);
  EDGEINF_RETURN_IF_ERROR(store->init());
  return std::unique_ptr<KvStore>(std::move(store));
}

}  // namespace edgeinf::cuda_backend
