// The trainable gate that mixes EdgeInfinite's memory read-out into the local attention output,
// and its GGUF side file (<model>.gate.gguf).
//   scalar: g[t, h] = sigmoid(beta[h])                                  (one number per head)
//   linear: g[t, h] = sigmoid(W[h] . [A_mem[t]; A_local[t]] + b[h])    (W [n_head, 2 * n_head * head_dim])
// Optionally, a trained projection of the queries that read the memory (beyond the method: see
// README "Memory-path parameters"): the memory is read with P[h] q[h] instead of q[h], per query
// head, P [n_head, head_dim, head_dim]; without it the queries read the memory as they are.
// Side file: tensors blk.N.mem_gate.bias [n_head], for linear blk.N.mem_gate.weight
// [2 * n_head * head_dim, n_head], with a projection blk.N.mem_gate.query [head_dim, head_dim,
// n_head] in every layer; metadata edgeinf.gate.{kind, sink, window, segment, update,
// kv_type, model_fingerprint, calibration_hash} (a file without kv_type was trained with f32).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "engine/kv/kv_policy.h"

namespace edgeinf {

enum class GateKind { kScalar, kLinear };
const char* gate_kind_name(GateKind kind);
StatusOr<GateKind> parse_gate_kind(const std::string& name);
const char* memory_update_name(MemoryUpdate update);
StatusOr<MemoryUpdate> parse_memory_update(const std::string& name);

// The shape of EdgeInfinite the gate was trained for; recorded in the side file.
struct GateConfig {
  GateKind kind = GateKind::kScalar;
  int sink = 4;
  int window = 1024;
  int segment = 512;
  MemoryUpdate update = MemoryUpdate::kDelta;
  KvType kv_type = KvType::kF32;  // how the exact KV entries were stored
  std::string model_fingerprint;
  std::string calibration_hash;
};

class MemoryGate {
 public:
  // A gate with zero weights and the given bias (bias -inf: g = 0; bias 0: g = 0.5).
  MemoryGate(const GateConfig& config, const AttentionShape& shape, float bias);

  // Reads a side file; refuses one made for another model (fingerprint) or head layout.
  static StatusOr<std::unique_ptr<MemoryGate>> load(const std::string& path, const AttentionShape& shape,
                                                    const std::string& model_fingerprint);
  Status save(const std::string& path) const;

  const GateConfig& config() const { return config_; }
  int n_layer() const { return int(bias_.size()); }
  // Parameters of layer il: bias [n_head]; weight [n_head, 2 * n_head * head_dim] (linear only).
  std::vector<float>& bias(int il) { return bias_[size_t(il)]; }
  std::vector<float>& weight(int il) { return weight_[size_t(il)]; }
  const std::vector<float>& bias(int il) const { return bias_[size_t(il)]; }
  const std::vector<float>& weight(int il) const { return weight_[size_t(il)]; }
  // The query projection of layer il: [n_head, head_dim (out), head_dim (in)], row-major; empty in
  // every layer when the gate has none.
  bool has_query_projection() const { return !query_.empty() && !query_[0].empty(); }
  std::vector<float>& query(int il) { return query_[size_t(il)]; }
  const std::vector<float>& query(int il) const { return query_[size_t(il)]; }
  // Gives every layer the identity projection (reads as before until trained); no-op if it has one.
  void add_query_projection();
  size_t n_params() const;
  // "scalar" or "linear", with " + query projection" when it has one.
  std::string describe() const;
  // The queries that read layer il's memory: P q into out ([n_tok, q_dim], row stride q_dim), or
  // q itself when the gate has no projection (out untouched).
  const float* memory_queries(int il, const float* q, int64_t n_tok, float* out, kernels::cpu::ThreadPool& pool) const;

  // Gate values g [n_tok, n_head] of layer il from A_mem and A_local ([n_tok, n_head * head_dim]).
  void compute(int il, const float* a_mem, const float* a_local, int64_t n_tok, float* g,
               kernels::cpu::ThreadPool& pool) const;

 private:
  GateConfig config_;
  AttentionShape shape_;
  std::vector<std::vector<float>> bias_, weight_, query_;
};

// An untrained scalar gate of the given value in (0, 1) for a policy of kv's shape (S, W, L, update
// rule): for runs without a gate file that still read the memory (eval, bench).
std::unique_ptr<MemoryGate> fixed_gate(const KvPolicyOptions& kv, const AttentionShape& shape, float value);

// The edgeinfinite policy's options of the shape a gate was trained for (S, W, L, update rule, KV
// type).
KvPolicyOptions edgeinfinite_options(const GateConfig& config);

// MODEL.gate.gguf beside MODEL.gguf.
std::string default_gate_path(const std::string& model_path);
// The gate for a model: `explicit_path` if given (an error if it cannot be used; "none": no gate),
// else the default path if that file exists, else nullptr.
StatusOr<std::unique_ptr<MemoryGate>> load_default_gate(const std::string& model_path, const std::string& explicit_path,
                                                        const AttentionShape& shape, const std::string& fingerprint);

}  // namespace edgeinf
