// What a KV policy is: it owns a session's attention state (KV entries, and for EdgeInfinite the
// compressed memory), decides what to keep, assigns RoPE positions, and runs each layer's attention.
// Policies are small strategy objects created by name from one registry (kv_registry.cpp).
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/model/llama_model.h"
#include "engine/util/bytes.h"
#include "engine/util/status.h"
#include "kernels/common/quant_blocks.h"
#include "kernels/cpu/thread_pool.h"

namespace edgeinf {

class MemoryGate;
class KvStore;
struct KvStoreShape;
// Makes a backend's store (kv_store.h) of a shape; ResourceExhausted when its memory cannot hold it.
using KvStoreMaker = std::function<StatusOr<std::unique_ptr<KvStore>>(const KvStoreShape&)>;

enum class MemoryUpdate { kLinear, kDelta };

// How a policy stores its exact KV entries (kernels/common/kv_rows.h): f32 (exact), f16, or q8
// (int8 with an fp16 scale per block of 32 values of a head). EdgeInfinite's memory stays f32.
using KvType = kernels::WeightType;
// "f32", "f16", "q8".
const char* kv_type_name(KvType type);
// The type of that name; InvalidArgument naming the three otherwise.
StatusOr<KvType> parse_kv_type(std::string_view name);

struct KvPolicyOptions {
  std::string name = "full";
  int n_ctx = 0;        // full: KV capacity in tokens (0 = the model's training context)
  int sink = 4;         // S: first tokens kept exactly (streaming, edgeinfinite)
  int window = 1024;    // W: recent tokens kept exactly (the window holds W..W+L)
  int segment = 512;    // L: prefill segment and fold size
  int budget = 0;       // snapkv, pyramidkv: KV entries per head (0 = sink + window)
  int obs_window = 8;   // snapkv, pyramidkv: observation window (last queries that vote)
  int pool_kernel = 7;  // snapkv, pyramidkv: 1-D max-pool kernel over the votes
  float pyramid_beta = 20.0f;
  MemoryUpdate update = MemoryUpdate::kDelta;
  KvType kv_type = KvType::kF32;     // the exact entries' storage type
  const MemoryGate* gate = nullptr;  // edgeinfinite: nullptr = gate 0 (StreamingLLM behaviour)
};

// The model facts a policy needs.
struct AttentionShape {
  int n_layer = 0;
  int n_head = 0;
  int n_kv_head = 0;
  int head_dim = 0;
  int n_rot = 0;
  int n_ctx_train = 0;
  float rope_base = 10000.0f;
  float rope_freq_scale = 1.0f;
  const float* rope_freq_factors = nullptr;
  bool rope_neox = false;

  static AttentionShape of(const LlamaModel& model);
  int64_t q_dim() const { return int64_t(n_head) * head_dim; }
  int64_t kv_dim() const { return int64_t(n_kv_head) * head_dim; }
};

// One layer's attention step for a batch. q, k are pre-RoPE and may be rotated in place.
struct LayerAttention {
  int layer = 0;
  int64_t n_tok = 0;
  float* q = nullptr;    // [n_tok, n_head * head_dim]
  float* k = nullptr;    // [n_tok, n_kv_head * head_dim]
  float* v = nullptr;    // [n_tok, n_kv_head * head_dim]
  float* out = nullptr;  // [n_tok, n_head * head_dim]
};

class KvPolicy {
 public:
  virtual ~KvPolicy() = default;
  virtual const char* name() const = 0;
  // Largest batch begin_batch accepts.
  virtual int64_t max_batch() const = 0;
  // The largest shapes one layer step runs: keys one attention call reads, rows folded into a
  // memory at once (0: none). A backend sizes its scratch for them when a context is made.
  struct StepShape {
    int64_t keys = 0, folded = 0;
  };
  virtual StepShape step_shape() const = 0;
  // Tokens the policy can take in total since reset (unbounded unless it keeps everything).
  virtual int64_t capacity() const { return std::numeric_limits<int64_t>::max(); }
  // Starts a batch of n_tok new tokens: plans eviction or folding and their RoPE positions.
  // OutOfRange when the policy cannot hold them (full cache). Mutates only the plan.
  virtual Status begin_batch(int64_t n_tok) = 0;
  // Runs layer a.layer for the batch: applies the plan to that layer's state, stores K/V, attends,
  // writes a.out. Called once per layer, in layer order, between begin_batch and end_batch.
  virtual void attend(const LayerAttention& a, kernels::cpu::ThreadPool& pool) = 0;
  // Commits the batch (counters; SnapKV-style selection when over budget).
  virtual void end_batch(kernels::cpu::ThreadPool& pool) = 0;
  // Forgets everything; the buffers are kept.
  virtual void reset() = 0;

  virtual int64_t n_seen() const = 0;        // tokens processed since reset
  virtual int64_t n_kept() const = 0;        // KV entries held (per head, maximum over layers)
  virtual int64_t n_compressed() const = 0;  // tokens folded into memory or evicted
  // Bytes of attention state allocated now (KV entries plus memory). Policies whose arrays grow
  // with the tokens they hold allocate as they go; the rest allocate max_state_bytes at creation.
  virtual size_t state_bytes() const = 0;
  // The most state_bytes() can ever reach: the bound fixed by the options and the model.
  virtual size_t max_state_bytes() const { return state_bytes(); }

  // The state between batches, for session snapshots: save appends it; restore reads it into a
  // policy made with the same options and shape. FailedPrecondition when the bytes describe
  // another shape, DataLoss when they are truncated or inconsistent; on error the policy is reset.
  // save fails only when the state cannot be read (a device error); w then holds a partial state.
  // A successful restore marks the state as saved (see mark_saved).
  virtual Status save(ByteWriter& w) const = 0;
  virtual Status restore(ByteReader& r) = 0;

  // Incremental snapshots, so that a store appends what a turn changed instead of rewriting the
  // whole state. mark_saved() records the current state as the one last saved (call it once a
  // snapshot of it is durable). save_delta appends the changes since then and returns true, or
  // returns false, writing nothing, when the policy keeps no record of them or they would be no
  // smaller than save() (then save the whole state); an error when the state cannot be read (a
  // device error). apply_delta applies such changes to the state
  // they were taken from, bit for bit; FailedPrecondition when this is another state, DataLoss when
  // the bytes are damaged; on error the policy is reset. After apply_delta the state is marked saved.
  virtual bool has_deltas() const { return false; }
  virtual void mark_saved() {}
  virtual StatusOr<bool> save_delta(ByteWriter& w) const {
    (void)w;
    return false;
  }
  // The bytes save_delta would write now (0: it would write nothing), without writing them.
  virtual size_t delta_size() const { return 0; }
  virtual Status apply_delta(ByteReader& r, kernels::cpu::ThreadPool& pool) {
    (void)r, (void)pool;
    return absl::UnimplementedError(absl::StrCat("the ", name(), " policy has no incremental snapshots"));
  }

  // The store holding the policy's arrays (kv_store.h), or nullptr for a policy that keeps its
  // own on the host (SnapKV, PyramidKV).
  virtual const KvStore* store() const { return nullptr; }
};

// What a policy does, as data: the registry (kv_registry.cpp) holds one of these per policy, and
// code that treats policies differently asks these traits instead of comparing names.
struct KvPolicyTraits {
  const char* name;
  StatusOr<std::unique_ptr<KvPolicy>> (*make)(const KvPolicyOptions&, const AttentionShape&, const KvStoreMaker&);
  bool sink_window;       // exact attention over sinks + a recent window of W..W+L (S, W, L validated)
  bool selects;           // keeps a per-head budget chosen by attention votes (budget, obs window, pool)
  bool keeps_everything;  // holds every token up to the context size; nothing leaves
  bool compresses;        // tokens that leave are folded into a compressed memory read through the gate
  bool device_form;       // keeps its arrays in a store (kv_store.h): runs on every backend
  // Tokens that leave the exact cache are dropped (neither kept nor compressed).
  bool drops() const { return !keeps_everything && !compresses; }
};

// The registered policy of that name, or nullptr.
const KvPolicyTraits* find_kv_policy(std::string_view name);
// OK for a registered name, else InvalidArgument naming the registered ones.
Status known_kv_policy(std::string_view name);
// The registered policy of that name; the name must be registered (aborts otherwise).
const KvPolicyTraits& kv_policy_traits(std::string_view name);
// The gate a policy of these options reads: `gate` for a policy that compresses, else nullptr.
const MemoryGate* gate_for_policy(const KvPolicyOptions& options, const MemoryGate* gate);

// InvalidArgument when options.name is unknown or its shape or KV type unusable for the model.
Status validate_kv_options(const KvPolicyOptions& options, const AttentionShape& shape);
// Creates the policy named in options.name (full, streaming, snapkv, pyramidkv, edgeinfinite), its
// arrays in a store the maker makes (a policy with a device form), else on the host.
StatusOr<std::unique_ptr<KvPolicy>> make_kv_policy(const KvPolicyOptions& options, const AttentionShape& shape,
                                                   const KvStoreMaker& stores);
// The same on the CPU.
StatusOr<std::unique_ptr<KvPolicy>> make_kv_policy(const KvPolicyOptions& options, const AttentionShape& shape);
// Registered policy names, for help texts and errors; with a filter, those whose traits pass it.
std::vector<std::string> kv_policy_names(bool (*filter)(const KvPolicyTraits&) = nullptr);

}  // namespace edgeinf
