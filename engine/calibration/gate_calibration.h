// `edgeinf calibrate`: trains the EdgeInfinite memory gate of a frozen model by layer-wise
// distillation. Calibration sequences lie inside the model's trained context, where full attention
// is the truth. Each sequence runs once through the model with full attention (the teacher, whose
// outputs carry the forward pass, so every layer sees the inputs full attention gives it) while
// EdgeInfinite's own parts run beside it on the same queries, keys and values: folding, memory
// read-out and sink/window/segment attention. Sampled tokens past the first fold become samples
// (gate_trainer.h); each layer's gate is then fitted to them, the last sequences held out for
// validation.
#pragma once

#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "engine/calibration/gate_trainer.h"
#include "engine/kv/memory_gate.h"
#include "engine/runtime/llama_context.h"

namespace edgeinf {

struct CalibrationOptions {
  GateConfig gate;                  // kind, S, W, L, update rule; fingerprint and hash are filled in
  int context = 0;                  // tokens per sequence (0: min(8192, the model's trained context))
  int sequences = 6;                // sequences drawn from the text, including the held-out ones
  int validation_sequences = 1;     // the last ones drawn, held out for validation
  int samples_per_sequence = 1024;  // tokens sampled per sequence (the same for every layer)
  uint64_t seed = 1;
  GateFitOptions fit;
};

struct CalibrationLayerReport {
  int64_t n_train = 0, n_val = 0;
  GateFitReport fit;
};

struct CalibrationReport {
  std::vector<CalibrationLayerReport> layers;
  double collect_s = 0, fit_s = 0;
  double mean_val_scalar = 1, mean_val = 1;  // mean over layers of the relative validation loss
};

// stage: "collect" (done, total in tokens) or "fit" (done, total in layers).
using CalibrationProgress = std::function<void(const char* stage, int64_t done, int64_t total)>;

// Per layer, the training and held-out samples of a calibration run.
struct CalibrationSamples {
  std::vector<GateSamples> train, val;
};

// The first half of calibrate_gate: runs the sequences and returns the samples.
StatusOr<CalibrationSamples> collect_gate_samples(const LlamaModel& model, std::span<const TokenId> tokens,
                                                  const CalibrationOptions& options, kernels::cpu::ThreadPool& pool,
                                                  const CalibrationProgress& progress);

// Trains a gate on `tokens` (the calibration text, already tokenized; its hash goes into the
// gate's config). InvalidArgument when the text is too short for the requested sequences.
StatusOr<std::unique_ptr<MemoryGate>> calibrate_gate(const LlamaModel& model, std::span<const TokenId> tokens,
                                                     const std::string& text_hash, const CalibrationOptions& options,
                                                     kernels::cpu::ThreadPool& pool,
                                                     const CalibrationProgress& progress, CalibrationReport* report);

}  // namespace edgeinf
