// Training EdgeInfinite's memory gate on the frozen model's own next-token loss.
//
// GateLmPass runs the model the way inference runs it under `edgeinfinite` (batches of at most L
// tokens; sinks, window and batch attended exactly; older tokens folded into the memory; the
// memory read and mixed in through the gate being trained), recording each layer's activations,
// and returns the cross-entropy of the batch's scored tokens. With a gradient to fill it then
// runs the pass backwards through every layer (backward_ops.h) to the gate's parameters.
// Backpropagation is truncated at the batch: the sinks, the window's earlier entries and the
// memory, all made by earlier batches, are constants.
#pragma once

#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "engine/calibration/backward_ops.h"
#include "engine/calibration/gate_trainer.h"
#include "engine/kv/edgeinfinite_policy.h"
#include "engine/kv/memory_gate.h"
#include "engine/util/token_id.h"

namespace edgeinf {

// d loss / d gate parameters, laid out as MemoryGate's: per layer bias [n_head], for the linear
// kind weight [n_head, 2 * q_dim], with a query projection query [n_head, head_dim, head_dim].
struct GateGradient {
  std::vector<std::vector<float>> bias, weight, query;

  explicit GateGradient(const MemoryGate& gate);
  void zero();
};

struct BatchLoss {
  double nll = 0;            // summed over the scored tokens
  int64_t n_scored = 0;      // tokens with a target
  bool read_memory = false;  // whether the memory was read (else the gate had no effect)
};

class GateLmPass {
 public:
  // Decodes the model's matrices to fp32 (about 4 bytes per parameter) for the backward pass.
  // The policy's shape, update rule and KV type are `gate`'s, and whether the memory's queries are
  // projected (every gate run() is given must agree).
  static StatusOr<std::unique_ptr<GateLmPass>> create(const LlamaModel& model, const MemoryGate& gate,
                                                      kernels::cpu::ThreadPool& pool);

  // Starts a new sequence.
  void reset();
  // The policy's state between batches (to start several passes from one prefix).
  Status save(std::string* out) const;
  Status restore(const std::string& bytes);
  int64_t n_seen() const { return policy_->n_seen(); }
  // Mean over layers and tokens of |[A_mem; A_loc]|_1, the gate's input, in the last batch that
  // read the memory (0 before one): the scale of the linear gate's weights' steps.
  double gate_input_l1() const;

  // One batch of at most L tokens through the model with `gate`. targets (one per token, or empty:
  // none scored) gives the token each position should predict; a negative target is not scored.
  // With `grad`, adds d(nll * loss_scale)/d(gate parameters) to it.
  StatusOr<BatchLoss> run(std::span<const TokenId> tokens, std::span<const int32_t> targets, const MemoryGate& gate,
                          GateGradient* grad, float loss_scale = 1.0f);

 private:
  GateLmPass(const LlamaModel& model, const AttentionShape& shape, const MemoryGate& gate,
             kernels::cpu::ThreadPool& pool);
  struct Ops;  // the forward pass's steps
  struct LayerRecord {
    std::vector<float> x_in, q_pre, q_mem, k_pre, v, q_rot, a_loc, a_mem, g, x_mid, gate_pre, up;
  };
  void backward(int64_t n, const float* dlogits, const MemoryGate& gate, GateGradient& grad);

  const LlamaModel& model_;
  AttentionShape shape_;
  KvPolicyOptions options_;
  kernels::cpu::ThreadPool& pool_;
  // The store reads the memory through this copy of the gate's query projection (the gate being
  // trained changes between runs); its other parameters are unused.
  MemoryGate reader_;
  std::unique_ptr<EdgeInfinitePolicy> policy_;
  struct LayerMatrices {
    TransposedWeight wq, wk, wv, wo, w_gate, w_up, w_down;
  };
  std::vector<LayerMatrices> mats_;
  TransposedWeight output_;
  // The batch's activations and the state it attended to.
  std::vector<LayerRecord> rec_;
  std::vector<float> x_final_, logits_;
  bool read_memory_ = false;
  int64_t base_ = 0, n_kv_ = 0;                    // the batch's first entry; entries attended
  std::vector<std::vector<float>> keys_, values_;  // per layer [n_kv, kv_dim], rotated keys
  std::vector<std::vector<float>> mem_m_, mem_z_;  // per layer M [n_kv_head, d, d], z [n_kv_head, d]
};

struct LmTrainOptions {
  int context = 4096;            // tokens per sequence; the loss is scored once the memory is read
  int sequences = 10;            // drawn from the text, the validation ones included
  int validation_sequences = 2;  // the last ones drawn
  int steps = 60;                // Adam steps, one training sequence each (cycling)
  float lr = 0.05f;              // Adam step of the biases; the linear weights': lr / mean |input|_1
  float query_lr = 1e-3f;        // Adam step of the query projection's entries (when the gate has one)
  int eval_every = 10;           // validation passes, keeping the best parameters seen
  float min_bias = -8.0f;        // closed heads start here, where the gradient reaches them
  uint64_t seed = 1;
  std::string checkpoint;  // resumable state (written after every step); empty: none
};

struct LmTrainReport {
  double closed_val_nll = 0;  // mean validation loss per token with every gate shut (streaming)
  double init_val_nll = 0;    // of the starting gate
  double best_val_nll = 0;    // of the gate returned
  int best_step = 0;          // 0: the starting gate was never beaten
  int resumed_at = 0;         // the step a checkpoint resumed from (0: a fresh start)
  double seconds = 0;
};

// step of steps done; train: that step's mean loss per token; val: the last validation loss
// (NaN before the first); eta: seconds left, estimated.
using LmTrainProgress = std::function<void(int step, int steps, double train, double val, double eta)>;

// Trains `init`'s parameters (its shape, kind, update rule and KV type) on `tokens` by Adam on the
// next-token loss through the frozen model, and returns the gate with the lowest validation loss.
// Deterministic for a seed; with options.checkpoint, resumes from that file when it holds a run
// of the same configuration (an error when it holds another), and rewrites it after every step.
StatusOr<std::unique_ptr<MemoryGate>> train_gate_lm(const LlamaModel& model, std::span<const TokenId> tokens,
                                                    const MemoryGate& init, const LmTrainOptions& options,
                                                    kernels::cpu::ThreadPool& pool, const LmTrainProgress& progress,
                                                    LmTrainReport* report);

// An instruction sample (S-SFT): a document, then what follows it (an instruction and its answer),
// read as a session reads them: the document in batches of L, then the rest in batches of its own.
// Only tokens[score_from:] are scored (the answer), each predicted from the token before it.
struct GateTrainingSample {
  std::vector<TokenId> tokens;
  int64_t document_end = 0;  // 0 < document_end <= size
  int64_t score_from = 0;    // 0 < score_from < size; the memory must be read before it
};

// train_gate_lm on instruction samples instead of windows of text: the loss is on each sample's
// answer, the last options.validation_sequences samples are held out, and options.context and
// options.sequences are unused (the samples give them). Deterministic; resumable the same way.
StatusOr<std::unique_ptr<MemoryGate>> train_gate_sft(const LlamaModel& model,
                                                     std::span<const GateTrainingSample> samples,
                                                     const MemoryGate& init, const LmTrainOptions& options,
                                                     kernels::cpu::ThreadPool& pool, const LmTrainProgress& progress,
                                                     LmTrainReport* report);

}  // namespace edgeinf
