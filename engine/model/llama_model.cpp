// Reads Llama-family hyper-parameters from GGUF metadata and binds weight tensors by name.
#include "engine/model/llama_model.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kernels/reference/dequantize.h"

namespace edgeinf {
namespace {

const char* const kSupportedArchs[] = {"llama", "mistral", "qwen2"};

}  // namespace

StatusOr<std::unique_ptr<LlamaModel>> LlamaModel::load(const std::string& path) {
  EDGEINF_ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> gguf, GgufFile::open(path));
  return from_gguf(std::move(gguf));
}

StatusOr<std::unique_ptr<LlamaModel>> LlamaModel::from_gguf(std::unique_ptr<GgufFile> gguf) {
  std::unique_ptr<LlamaModel> model(new LlamaModel());
  model->gguf_ = std::move(gguf);
  Status s = model->init();
  if (!s.ok()) {
    const std::string& path = model->gguf_->path();
    return Status(s.code(), path.empty() ? std::string(s.message()) : absl::StrCat(path, ": ", s.message()));
  }
  return model;
}

StatusOr<WeightView> LlamaModel::matrix(const std::string& name, int64_t n_in, int64_t n_out) {
  const GgufTensorInfo* t = gguf_->find_tensor(name);
  if (t == nullptr) return absl::InvalidArgumentError(absl::StrCat("missing tensor '", name, "'"));
  if (t->n_dims != 2 || t->ne[0] != n_in || t->ne[1] != n_out) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' has shape [", t->ne[0], ", ", t->ne[1],
                                                   "], expected [", n_in, ", ", n_out, "]"));
  }
  WeightView w;
  w.data = gguf_->tensor_data(*t);
  w.type = kernels::WeightType(t->type);
  w.n_in = n_in;
  w.n_out = n_out;
  w.row_bytes = int64_t(kernels::row_bytes(w.type, n_in));
  weight_bytes_ += t->n_bytes;
  return w;
}

StatusOr<const float*> LlamaModel::vector(const std::string& name, int64_t n, bool required) {
  const GgufTensorInfo* t = gguf_->find_tensor(name);
  if (t == nullptr) {
    if (!required) return nullptr;
    return absl::InvalidArgumentError(absl::StrCat("missing tensor '", name, "'"));
  }
  if (t->n_elements() != n) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor '", name, "' has ", t->n_elements(), " elements, expected ", n));
  }
  weight_bytes_ += t->n_bytes;
  const auto type = kernels::WeightType(t->type);
  if (type == kernels::WeightType::kF32) return reinterpret_cast<const float*>(gguf_->tensor_data(*t));
  if (n % kernels::weight_type_traits(t->type)->block_elems != 0) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' cannot be decoded"));
  }
  owned_vectors_.emplace_back(size_t(n));
  kernels::reference::dequantize_row(type, gguf_->tensor_data(*t), owned_vectors_.back().data(), n);
  return owned_vectors_.back().data();
}

Status LlamaModel::init() {
  LlamaConfig& c = config_;
  EDGEINF_ASSIGN_OR_RETURN(c.arch, gguf_->get_string("general.architecture"));
  bool supported = false;
  for (const char* a : kSupportedArchs) supported |= c.arch == a;
  if (!supported) {
    return absl::UnimplementedError(absl::StrCat(
        "model architecture '", c.arch, "' is not supported (supported: ", absl::StrJoin(kSupportedArchs, ", "), ")"));
  }
  c.name = gguf_->get_string_or("general.name", c.arch);
  const std::string p = c.arch + ".";
  auto get_dim = [&](const std::string& key, int* out) -> Status {
    EDGEINF_ASSIGN_OR_RETURN(int64_t v, gguf_->get_int(p + key));
    if (v <= 0 || v > (int64_t(1) << 24)) {
      return absl::InvalidArgumentError(absl::StrCat("metadata ", p, key, " = ", v, " is out of range"));
    }
    *out = int(v);
    return absl::OkStatus();
  };
  EDGEINF_RETURN_IF_ERROR(get_dim("block_count", &c.n_layer));
  EDGEINF_RETURN_IF_ERROR(get_dim("embedding_length", &c.n_embd));
  EDGEINF_RETURN_IF_ERROR(get_dim("feed_forward_length", &c.n_ff));
  EDGEINF_RETURN_IF_ERROR(get_dim("attention.head_count", &c.n_head));
  c.n_kv_head = c.n_head;
  if (gguf_->find(p + "attention.head_count_kv") != nullptr) {
    EDGEINF_RETURN_IF_ERROR(get_dim("attention.head_count_kv", &c.n_kv_head));
  }
  if (c.n_layer > 4096 || c.n_head > 4096 || c.n_head % c.n_kv_head != 0) {
    return absl::InvalidArgumentError(absl::StrCat("inconsistent head counts: ", c.n_head, " query heads, ",
                                                   c.n_kv_head, " KV heads, ", c.n_layer, " layers"));
  }
  c.head_dim = c.n_embd / c.n_head;
  if (gguf_->find(p + "attention.key_length") != nullptr)
    EDGEINF_RETURN_IF_ERROR(get_dim("attention.key_length", &c.head_dim));
  if (gguf_->get_int_or(p + "attention.value_length", c.head_dim) != c.head_dim) {
    return absl::UnimplementedError("models whose value head size differs from the key head size are not supported");
  }
  c.n_rot = c.head_dim;
  if (gguf_->find(p + "rope.dimension_count") != nullptr)
    EDGEINF_RETURN_IF_ERROR(get_dim("rope.dimension_count", &c.n_rot));
  if (c.n_rot > c.head_dim || c.n_rot % 2 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("rope.dimension_count ", c.n_rot, " does not fit head size ", c.head_dim));
  }
  c.n_ctx_train = int(gguf_->get_int_or(p + "context_length", 4096));
  c.rms_eps = float(gguf_->get_float_or(p + "attention.layer_norm_rms_epsilon", 1e-5));
  c.rope_base = float(gguf_->get_float_or(p + "rope.freq_base", 10000.0));
  if (!(c.rms_eps > 0) || !(c.rope_base > 1)) return absl::InvalidArgumentError("invalid rms epsilon or rope base");
  const std::string scaling = gguf_->get_string_or(p + "rope.scaling.type", "none");
  double factor = gguf_->get_float_or(p + "rope.scaling.factor", gguf_->get_float_or(p + "rope.scale_linear", 1.0));
  if (scaling == "linear" || (scaling == "none" && factor != 1.0 && gguf_->find(p + "rope.scale_linear"))) {
    if (!(factor > 0)) return absl::InvalidArgumentError("rope scaling factor must be positive");
    c.rope_freq_scale = float(1.0 / factor);
  } else if (scaling != "none") {
    return absl::UnimplementedError(absl::StrCat("rope scaling type '", scaling, "' is not supported (none, linear)"));
  }
  c.rope_neox = c.arch == "qwen2";

  const GgufTensorInfo* embd = gguf_->find_tensor("token_embd.weight");
  if (embd == nullptr || embd->n_dims != 2) return absl::InvalidArgumentError("missing tensor 'token_embd.weight'");
  c.n_vocab = int(embd->ne[1]);
  EDGEINF_ASSIGN_OR_RETURN(token_embd_, matrix("token_embd.weight", c.n_embd, c.n_vocab));
  c.tied_output = gguf_->find_tensor("output.weight") == nullptr;
  if (c.tied_output) {
    output_ = token_embd_;
  } else {
    EDGEINF_ASSIGN_OR_RETURN(output_, matrix("output.weight", c.n_embd, c.n_vocab));
  }
  EDGEINF_ASSIGN_OR_RETURN(const float* out_norm, vector("output_norm.weight", c.n_embd, true));
  output_norm_.assign(out_norm, out_norm + c.n_embd);
  EDGEINF_ASSIGN_OR_RETURN(const float* freqs, vector("rope_freqs.weight", c.n_rot / 2, false));
  if (freqs != nullptr) rope_freqs_.assign(freqs, freqs + c.n_rot / 2);

  const int64_t q_dim = int64_t(c.n_head) * c.head_dim;
  const int64_t kv_dim = int64_t(c.n_kv_head) * c.head_dim;
  layers_.resize(size_t(c.n_layer));
  for (int il = 0; il < c.n_layer; ++il) {
    LayerWeights& l = layers_[size_t(il)];
    const std::string b = absl::StrCat("blk.", il, ".");
    EDGEINF_ASSIGN_OR_RETURN(l.attn_norm, vector(b + "attn_norm.weight", c.n_embd, true));
    EDGEINF_ASSIGN_OR_RETURN(l.wq, matrix(b + "attn_q.weight", c.n_embd, q_dim));
    EDGEINF_ASSIGN_OR_RETURN(l.wk, matrix(b + "attn_k.weight", c.n_embd, kv_dim));
    EDGEINF_ASSIGN_OR_RETURN(l.wv, matrix(b + "attn_v.weight", c.n_embd, kv_dim));
    EDGEINF_ASSIGN_OR_RETURN(l.wo, matrix(b + "attn_output.weight", q_dim, c.n_embd));
    EDGEINF_ASSIGN_OR_RETURN(l.bq, vector(b + "attn_q.bias", q_dim, false));
    EDGEINF_ASSIGN_OR_RETURN(l.bk, vector(b + "attn_k.bias", kv_dim, false));
    EDGEINF_ASSIGN_OR_RETURN(l.bv, vector(b + "attn_v.bias", kv_dim, false));
    c.qkv_bias |= l.bq != nullptr;
    EDGEINF_ASSIGN_OR_RETURN(l.ffn_norm, vector(b + "ffn_norm.weight", c.n_embd, true));
    EDGEINF_ASSIGN_OR_RETURN(l.w_gate, matrix(b + "ffn_gate.weight", c.n_embd, c.n_ff));
    EDGEINF_ASSIGN_OR_RETURN(l.w_up, matrix(b + "ffn_up.weight", c.n_embd, c.n_ff));
    EDGEINF_ASSIGN_OR_RETURN(l.w_down, matrix(b + "ffn_down.weight", c.n_ff, c.n_embd));
  }
  return absl::OkStatus();
}

kernels::MatmulParams matmul_params(const WeightView& w, const float* x, float* y, int64_t n_tok, const float* bias,
                                    bool per_token) {
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
  p.per_token = per_token;
  return p;
}

}  // namespace edgeinf
