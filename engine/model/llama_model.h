// A Llama-family model loaded from GGUF: hyper-parameters and zero-copy views of its weights.
// Supported architectures: llama (and Llama 2/3, SmolLM, Mistral files using it), mistral, qwen2.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "engine/model/gguf.h"
#include "engine/util/status.h"
#include "kernels/common/op_params.h"
#include "kernels/common/quant_blocks.h"

namespace edgeinf {

struct LlamaConfig {
  std::string arch;
  std::string name;
  int n_layer = 0;
  int n_embd = 0;
  int n_head = 0;
  int n_kv_head = 0;
  int head_dim = 0;
  int n_ff = 0;
  int n_vocab = 0;
  int n_ctx_train = 0;
  int n_rot = 0;
  float rms_eps = 1e-5f;
  float rope_base = 10000.0f;
  float rope_freq_scale = 1.0f;  // 1 / linear scaling factor
  bool rope_neox = false;        // qwen2 rotates (i, i + n_rot/2); llama rotates adjacent pairs
  bool qkv_bias = false;
  bool tied_output = false;
};

// A weight matrix [n_out rows, n_in columns] inside the mapped file.
struct WeightView {
  const void* data = nullptr;
  kernels::WeightType type = kernels::WeightType::kF32;
  int64_t n_in = 0;
  int64_t n_out = 0;
  int64_t row_bytes = 0;
};

// The product y [n_tok, n_out] = x [n_tok, n_in] . W^T (+ bias) on contiguous rows, as the kernels
// take it (on whatever memory w.data, x and y are in).
kernels::MatmulParams matmul_params(const WeightView& w, const float* x, float* y, int64_t n_tok,
                                    const float* bias = nullptr, bool per_token = false);

struct LayerWeights {
  const float* attn_norm = nullptr;  // [n_embd]
  WeightView wq, wk, wv, wo;         // [n_head*head_dim | n_kv_head*head_dim | n_embd, ...]
  const float* bq = nullptr;         // optional QKV biases (qwen2)
  const float* bk = nullptr;
  const float* bv = nullptr;
  const float* ffn_norm = nullptr;  // [n_embd]
  WeightView w_gate, w_up, w_down;
};

class LlamaModel {
 public:
  // Opens the GGUF, validates architecture, shapes and types; weights stay memory-mapped.
  static StatusOr<std::unique_ptr<LlamaModel>> load(const std::string& path);
  // Same from an already parsed file (the model takes ownership).
  static StatusOr<std::unique_ptr<LlamaModel>> from_gguf(std::unique_ptr<GgufFile> gguf);

  const LlamaConfig& config() const { return config_; }
  const GgufFile& gguf() const { return *gguf_; }
  const WeightView& token_embd() const { return token_embd_; }
  const WeightView& output() const { return output_; }
  const float* output_norm() const { return output_norm_.data(); }
  const LayerWeights& layer(int il) const { return layers_[size_t(il)]; }
  const float* rope_freq_factors() const { return rope_freqs_.empty() ? nullptr : rope_freqs_.data(); }
  // Bytes of weights mapped from the file.
  size_t weight_bytes() const { return weight_bytes_; }

 private:
  LlamaModel() = default;
  Status init();
  StatusOr<WeightView> matrix(const std::string& name, int64_t n_in, int64_t n_out);
  StatusOr<const float*> vector(const std::string& name, int64_t n, bool required);

  std::unique_ptr<GgufFile> gguf_;
  LlamaConfig config_;
  WeightView token_embd_;
  WeightView output_;
  std::vector<float> output_norm_;
  std::vector<LayerWeights> layers_;
  std::vector<float> rope_freqs_;
  // Float copies of small vectors stored as F16/BF16 in some files (norms, biases).
  std::vector<std::vector<float>> owned_vectors_;
  size_t weight_bytes_ = 0;
};

}  // namespace edgeinf
