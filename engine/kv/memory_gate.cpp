// Gate evaluation and the GGUF side file.
#include "engine/kv/memory_gate.h"

#include <unistd.h>

#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "engine/model/gguf.h"
#include "engine/model/gguf_writer.h"
#include "kernels/common/linear_memory.h"
#include "kernels/cpu/ops.h"

namespace edgeinf {

const char* gate_kind_name(GateKind kind) { return kind == GateKind::kLinear ? "linear" : "scalar"; }

StatusOr<GateKind> parse_gate_kind(const std::string& name) {
  if (name == "scalar") return GateKind::kScalar;
  if (name == "linear") return GateKind::kLinear;
  return absl::InvalidArgumentError(absl::StrCat("unknown gate kind '", name, "' (scalar, linear)"));
}

const char* memory_update_name(MemoryUpdate update) { return update == MemoryUpdate::kLinear ? "linear" : "delta"; }

StatusOr<MemoryUpdate> parse_memory_update(const std::string& name) {
  if (name == "linear") return MemoryUpdate::kLinear;
  if (name == "delta") return MemoryUpdate::kDelta;
  return absl::InvalidArgumentError(absl::StrCat("unknown memory update rule '", name, "' (linear, delta)"));
}

MemoryGate::MemoryGate(const GateConfig& config, const AttentionShape& shape, float bias)
    : config_(config), shape_(shape) {
  bias_.assign(size_t(shape.n_layer), std::vector<float>(size_t(shape.n_head), bias));
  const size_t w = config.kind == GateKind::kLinear ? size_t(shape.n_head) * size_t(2 * shape.q_dim()) : 0;
  weight_.assign(size_t(shape.n_layer), std::vector<float>(w, 0.0f));
  query_.assign(size_t(shape.n_layer), std::vector<float>());
}

void MemoryGate::add_query_projection() {
  if (has_query_projection()) return;
  const size_t d = size_t(shape_.head_dim);
  for (std::vector<float>& p : query_) {
    p.assign(size_t(shape_.n_head) * d * d, 0.0f);
    for (size_t h = 0; h < size_t(shape_.n_head); ++h) {
      for (size_t i = 0; i < d; ++i) p[(h * d + i) * d + i] = 1.0f;
    }
  }
}

std::string MemoryGate::describe() const {
  return absl::StrCat(gate_kind_name(config_.kind), has_query_projection() ? " + query projection" : "");
}

const float* MemoryGate::memory_queries(int il, const float* q, int64_t n_tok, float* out,
                                        kernels::cpu::ThreadPool& pool) const {
  if (!has_query_projection()) return q;
  const int64_t q_dim = shape_.q_dim();
  kernels::cpu::head_projection_forward(
      {query_[size_t(il)].data(), q, q_dim, out, q_dim, n_tok, shape_.n_head, shape_.head_dim}, pool);
  return out;
}

size_t MemoryGate::n_params() const {
  size_t n = 0;
  for (size_t il = 0; il < bias_.size(); ++il) n += bias_[il].size() + weight_[il].size() + query_[il].size();
  return n;
}

void MemoryGate::compute(int il, const float* a_mem, const float* a_local, int64_t n_tok, float* g,
                         kernels::cpu::ThreadPool& pool) const {
  const std::vector<float>& b = bias_[size_t(il)];
  const int n_head = shape_.n_head;
  if (config_.kind == GateKind::kScalar) {
    for (int64_t t = 0; t < n_tok; ++t) {
      for (int h = 0; h < n_head; ++h) g[t * n_head + h] = kernels::sigmoid(b[size_t(h)]);
    }
    return;
  }
  const int64_t q_dim = shape_.q_dim();
  thread_local std::vector<float> both;
  both.resize(size_t(n_tok * 2 * q_dim));
  for (int64_t t = 0; t < n_tok; ++t) {
    std::memcpy(both.data() + t * 2 * q_dim, a_mem + t * q_dim, size_t(q_dim) * sizeof(float));
    std::memcpy(both.data() + t * 2 * q_dim + q_dim, a_local + t * q_dim, size_t(q_dim) * sizeof(float));
  }
  kernels::MatmulParams p;
  p.w = weight_[size_t(il)].data();
  p.w_type = kernels::WeightType::kF32;
  p.w_row_bytes = 2 * q_dim * int64_t(sizeof(float));
  p.x = both.data();
  p.x_stride = 2 * q_dim;
  p.y = g;
  p.y_stride = n_head;
  p.bias = b.data();
  p.n_tok = n_tok;
  p.n_in = 2 * q_dim;
  p.n_out = n_head;
  kernels::cpu::matmul_forward(p, pool);
  for (int64_t i = 0; i < n_tok * n_head; ++i) g[i] = kernels::sigmoid(g[i]);
}

Status MemoryGate::save(const std::string& path) const {
  GgufWriter w;
  w.kv_str("general.architecture", "edgeinf.gate");
  w.kv_str("edgeinf.gate.kind", gate_kind_name(config_.kind));
  w.kv_u32("edgeinf.gate.sink", uint32_t(config_.sink));
  w.kv_u32("edgeinf.gate.window", uint32_t(config_.window));
  w.kv_u32("edgeinf.gate.segment", uint32_t(config_.segment));
  w.kv_str("edgeinf.gate.update", memory_update_name(config_.update));
  w.kv_str("edgeinf.gate.kv_type", kv_type_name(config_.kv_type));
  w.kv_str("edgeinf.gate.model_fingerprint", config_.model_fingerprint);
  w.kv_str("edgeinf.gate.calibration_hash", config_.calibration_hash);
  w.kv_u32("edgeinf.gate.block_count", uint32_t(shape_.n_layer));
  w.kv_u32("edgeinf.gate.head_count", uint32_t(shape_.n_head));
  w.kv_u32("edgeinf.gate.head_dim", uint32_t(shape_.head_dim));
  for (int il = 0; il < n_layer(); ++il) {
    const std::string b = absl::StrCat("blk.", il, ".mem_gate.");
    w.tensor_f32(b + "bias", {shape_.n_head}, bias_[size_t(il)]);
    if (config_.kind == GateKind::kLinear)
      w.tensor_f32(b + "weight", {2 * shape_.q_dim(), shape_.n_head}, weight_[size_t(il)]);
    if (has_query_projection())
      w.tensor_f32(b + "query", {shape_.head_dim, shape_.head_dim, shape_.n_head}, query_[size_t(il)]);
  }
  return w.write_file(path);
}

StatusOr<std::unique_ptr<MemoryGate>> MemoryGate::load(const std::string& path, const AttentionShape& shape,
                                                       const std::string& model_fingerprint) {
  EDGEINF_ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> f, GgufFile::open(path));
  auto bad = [&](const std::string& why) {
    return absl::FailedPreconditionError(absl::StrCat("gate file '", path, "': ", why));
  };
  if (f->get_string_or("general.architecture", "") != "edgeinf.gate") return bad("not a memory-gate file");
  GateConfig c;
  EDGEINF_ASSIGN_OR_RETURN(c.kind, parse_gate_kind(f->get_string_or("edgeinf.gate.kind", "")));
  EDGEINF_ASSIGN_OR_RETURN(c.update, parse_memory_update(f->get_string_or("edgeinf.gate.update", "")));
  EDGEINF_ASSIGN_OR_RETURN(c.kv_type, parse_kv_type(f->get_string_or("edgeinf.gate.kv_type", "f32")));
  c.sink = int(f->get_int_or("edgeinf.gate.sink", -1));
  c.window = int(f->get_int_or("edgeinf.gate.window", -1));
  c.segment = int(f->get_int_or("edgeinf.gate.segment", -1));
  c.model_fingerprint = f->get_string_or("edgeinf.gate.model_fingerprint", "");
  c.calibration_hash = f->get_string_or("edgeinf.gate.calibration_hash", "");
  if (c.sink < 0 || c.window < 0 || c.segment <= 0) return bad("missing or invalid sink/window/segment");
  if (c.model_fingerprint != model_fingerprint) {
    return bad(absl::StrCat("made for model ", c.model_fingerprint, ", this model is ", model_fingerprint));
  }
  if (f->get_int_or("edgeinf.gate.block_count", -1) != shape.n_layer ||
      f->get_int_or("edgeinf.gate.head_count", -1) != shape.n_head ||
      f->get_int_or("edgeinf.gate.head_dim", -1) != shape.head_dim) {
    return bad("layer or head counts differ from the model's");
  }
  auto gate = std::make_unique<MemoryGate>(c, shape, 0.0f);
  // A projection is in every layer or in none.
  if (f->find_tensor("blk.0.mem_gate.query") != nullptr) gate->add_query_projection();
  for (int il = 0; il < shape.n_layer; ++il) {
    const std::string b = absl::StrCat("blk.", il, ".mem_gate.");
    auto read = [&](const std::string& name, std::vector<float>& dst) -> Status {
      const GgufTensorInfo* t = f->find_tensor(name);
      if (t == nullptr || t->type != 0 || size_t(t->n_elements()) != dst.size()) {
        return bad(absl::StrCat("tensor '", name, "' is missing or has the wrong shape"));
      }
      std::memcpy(dst.data(), f->tensor_data(*t), dst.size() * sizeof(float));
      return absl::OkStatus();
    };
    EDGEINF_RETURN_IF_ERROR(read(b + "bias", gate->bias(il)));
    if (c.kind == GateKind::kLinear) EDGEINF_RETURN_IF_ERROR(read(b + "weight", gate->weight(il)));
    if (gate->has_query_projection()) {
      EDGEINF_RETURN_IF_ERROR(read(b + "query", gate->query(il)));
    } else if (f->find_tensor(b + "query") != nullptr) {
      return bad(absl::StrCat("tensor '", b, "query' without a projection in layer 0"));
    }
  }
  return gate;
}

std::unique_ptr<MemoryGate> fixed_gate(const KvPolicyOptions& kv, const AttentionShape& shape, float value) {
  GateConfig gc;
  gc.sink = kv.sink;
  gc.window = kv.window;
  gc.segment = kv.segment;
  gc.update = kv.update;
  gc.kv_type = kv.kv_type;
  return std::make_unique<MemoryGate>(gc, shape, std::log(value / (1 - value)));
}

KvPolicyOptions edgeinfinite_options(const GateConfig& config) {
  KvPolicyOptions o;
  o.name = "edgeinfinite";
  o.sink = config.sink;
  o.window = config.window;
  o.segment = config.segment;
  o.update = config.update;
  o.kv_type = config.kv_type;
  return o;
}

std::string default_gate_path(const std::string& model_path) {
  const std::string base = model_path.size() > 5 && model_path.substr(model_path.size() - 5) == ".gguf"
                               ? model_path.substr(0, model_path.size() - 5)
                               : model_path;
  return base + ".gate.gguf";
}

StatusOr<std::unique_ptr<MemoryGate>> load_default_gate(const std::string& model_path, const std::string& explicit_path,
                                                        const AttentionShape& shape, const std::string& fingerprint) {
  if (explicit_path == "none") return std::unique_ptr<MemoryGate>();
  if (!explicit_path.empty()) return MemoryGate::load(explicit_path, shape, fingerprint);
  const std::string path = default_gate_path(model_path);
  if (::access(path.c_str(), F_OK) != 0) return std::unique_ptr<MemoryGate>();
  return MemoryGate::load(path, shape, fingerprint);
}

}  // namespace edgeinf
