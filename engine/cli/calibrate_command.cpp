// `edgeinf calibrate`: trains the EdgeInfinite memory gate of a frozen GGUF model on the CPU and
// writes the gate side file: by layer-wise distillation against full attention
// (engine/calibration/gate_calibration.h), or, with --objective lm, from a starting gate on the
// model's own next-token loss (engine/calibration/lm_gate_training.h), or, with --objective sft,
// from a starting gate on the answers of instruction samples made from the text
// (engine/calibration/sft_samples.h). Deterministic for a seed; progress on stderr; a report on
// stdout.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "engine/calibration/gate_calibration.h"
#include "engine/calibration/lm_gate_training.h"
#include "engine/calibration/sft_samples.h"
#include "engine/cli/args.h"
#include "engine/cli/commands.h"
#include "engine/tokenizer/document_sections.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/util/sha256.h"

namespace edgeinf::cli {
namespace {

struct CalibrateArgs {
  std::string model = default_model_path();
  std::string out;
  std::vector<std::string> texts;
  std::string kind = "linear";
  std::string update = "delta";
  std::string kv_type = "f32";
  int threads = 0;
  bool progress = true;
  std::string objective = "distill";
  std::string init;             // lm, sft: the starting gate ("" = the model's gate file; "none" = a fresh one)
  std::set<std::string> given;  // shape options named on the command line
  int steps = 0, sequences = 0, val_sequences = 0;  // 0: the objective's default
  int parts = 4;                                    // sft: parts of the part and outline documents
  bool query_projection = false;                    // lm, sft: train a projection of the memory's queries too
  CalibrationOptions cal;
  LmTrainOptions lm;
};

void draw_progress(const char* stage, int64_t done, int64_t total) {
  if (!isatty(STDERR_FILENO)) {
    // Not a terminal: a line per tenth of each stage.
    static std::string last_stage;
    static int64_t last_tenth = -1;
    const int64_t tenth = total > 0 ? done * 10 / total : 10;
    if (stage != last_stage) last_stage = stage, last_tenth = -1;
    if (tenth > last_tenth) {
      last_tenth = tenth;
      std::fprintf(stderr, "calibrate: %s %lld/%lld\n", stage, static_cast<long long>(done),
                   static_cast<long long>(total));
    }
    return;
  }
  constexpr int kWidth = 40;
  const int filled = total > 0 ? int(done * kWidth / total) : kWidth;
  std::string bar(size_t(filled), '#');
  bar.resize(kWidth, '.');
  std::fprintf(stderr, "\r%-7s [%s] %lld/%lld %s", stage, bar.c_str(), static_cast<long long>(done),
               static_cast<long long>(total), std::strcmp(stage, "fit") == 0 ? "layers" : "tokens");
  if (done == total) std::fputc('\n', stderr);
  std::fflush(stderr);
}

// The texts tokenised one after another.
std::vector<TokenId> encode_texts(const Tokenizer& tok, const std::vector<std::string>& texts) {
  std::vector<TokenId> tokens;
  for (const std::string& text : texts) {
    const std::vector<TokenId> t = tok.encode(text, false, false);
    tokens.insert(tokens.end(), t.begin(), t.end());
  }
  return tokens;
}

// --objective lm and sft: from the starting gate, on the model's own next-token loss over windows
// of the text (lm) or over the answers of instruction samples made from its paragraphs (sft).
Status train_from_gate(CalibrateArgs& a, const LlamaModel& model, const Tokenizer& tok,
                       const std::vector<std::string>& texts, const std::string& text_hash) {
  std::unique_ptr<MemoryGate> init;
  const AttentionShape shape = AttentionShape::of(model);
  if (a.init != "none") {
    const std::string path = a.init.empty() ? default_gate_path(a.model) : a.init;
    EDGEINF_ASSIGN_OR_RETURN(init, MemoryGate::load(path, shape, model.gguf().fingerprint()));
    if (!a.given.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(*a.given.begin(),
                                                     ": the gate's shape and kind come from the "
                                                     "starting gate ",
                                                     path, " (use --init none for a fresh gate of another shape)"));
    }
  } else {
    GateConfig c = a.cal.gate;
    c.model_fingerprint = model.gguf().fingerprint();
    init = std::make_unique<MemoryGate>(c, shape, a.cal.fit.init_bias);
  }
  GateConfig config = init->config();
  config.calibration_hash = text_hash;
  MemoryGate start(config, shape, 0.0f);
  if (init->has_query_projection() || a.query_projection) start.add_query_projection();
  for (int il = 0; il < start.n_layer(); ++il) {
    start.bias(il) = init->bias(il);
    start.weight(il) = init->weight(il);
    if (init->has_query_projection()) start.query(il) = init->query(il);
  }
  const bool sft = a.objective == "sft";
  // Unset (0) options keep LmTrainOptions' defaults (S-SFT: 24 samples, 4 held out).
  if (sft) a.lm.sequences = 24, a.lm.validation_sequences = 4;
  if (a.cal.context > 0) a.lm.context = a.cal.context;
  if (a.steps > 0) a.lm.steps = a.steps;
  if (a.sequences > 0) a.lm.sequences = a.sequences;
  if (a.val_sequences > 0) a.lm.validation_sequences = a.val_sequences;
  a.lm.seed = a.cal.seed;
  std::vector<TokenId> tokens;
  std::vector<GateTrainingSample> plain;  // sft: the samples as training takes them
  size_t n_tokens = 0;
  int per_task[3] = {0, 0, 0};
  std::string last_sample;
  if (sft) {
    std::vector<std::vector<TokenId>> paragraphs;
    for (const std::string& text : texts) {
      std::vector<std::vector<TokenId>> p = encode_paragraphs(tok, text);
      paragraphs.insert(paragraphs.end(), std::make_move_iterator(p.begin()), std::make_move_iterator(p.end()));
    }
    SftSampleOptions so;
    so.context = a.lm.context;
    so.recent = int64_t(config.sink) + config.window;
    so.samples = a.lm.sequences;
    so.parts = a.parts;
    so.seed = a.lm.seed;
    EDGEINF_ASSIGN_OR_RETURN(std::vector<SftSample> samples, make_sft_samples(tok, paragraphs, so));
    last_sample = samples.back().question + samples.back().answer;
    for (SftSample& s : samples) {
      ++per_task[int(s.task)];
      n_tokens += s.sample.tokens.size();
      plain.push_back(std::move(s.sample));
    }
  } else {
    tokens = encode_texts(tok, texts);
    n_tokens = tokens.size();
  }
  std::fprintf(stderr,
               "calibrate: %zu tokens of %s (text sha256 %s); objective %s from %s; %s gate, S=%d W=%d L=%d, %s "
               "update, %s KV%s; %d %s of %d (%d held out); %d steps, lr %g; seed %llu; %d threads\n",
               n_tokens, sft ? "instruction samples" : "text", text_hash.c_str(), a.objective.c_str(),
               a.init == "none" ? "a fresh gate" : "the starting gate", gate_kind_name(config.kind), config.sink,
               config.window, config.segment, memory_update_name(config.update), kv_type_name(config.kv_type),
               start.has_query_projection() ? absl::StrCat(", query projection (lr ", a.lm.query_lr, ")").c_str() : "",
               a.lm.sequences, sft ? "samples" : "sequences", a.lm.context, a.lm.validation_sequences, a.lm.steps,
               double(a.lm.lr), static_cast<unsigned long long>(a.lm.seed), a.threads);
  kernels::cpu::ThreadPool pool(a.threads);
  LmTrainProgress progress;
  if (a.progress) {
    progress = [](int step, int steps, double train, double val, double eta) {
      std::fprintf(stderr, "%sstep %d/%d  train loss %.4f  validation %.4f  about %.0f min left%s",
                   isatty(STDERR_FILENO) ? "\r" : "calibrate: ", step, steps, train, val, eta / 60.0,
                   isatty(STDERR_FILENO) && step < steps ? "   " : "\n");
      std::fflush(stderr);
    };
  }
  LmTrainReport rep;
  std::unique_ptr<MemoryGate> gate;
  if (sft) {
    std::fprintf(stderr, "calibrate: %d fact, %d part and %d outline samples; the last one:%s\n", per_task[0],
                 per_task[1], per_task[2], last_sample.c_str());
    EDGEINF_ASSIGN_OR_RETURN(gate, train_gate_sft(model, plain, start, a.lm, pool, progress, &rep));
  } else {
    EDGEINF_ASSIGN_OR_RETURN(gate, train_gate_lm(model, tokens, start, a.lm, pool, progress, &rep));
  }
  EDGEINF_RETURN_IF_ERROR(gate->save(a.out));
  if (rep.resumed_at > 0) std::printf("resumed from step %d of %s\n", rep.resumed_at, a.lm.checkpoint.c_str());
  std::printf(
      "validation loss per token (perplexity): gate shut %.4f (%.3f), start %.4f (%.3f), trained %.4f (%.3f) "
      "at step %d\n",
      rep.closed_val_nll, std::exp(rep.closed_val_nll), rep.init_val_nll, std::exp(rep.init_val_nll), rep.best_val_nll,
      std::exp(rep.best_val_nll), rep.best_step);
  const bool projected = gate->has_query_projection();
  std::printf("layer  mean sigmoid(bias)%s\n", projected ? "  |P - I|_F / |I|_F" : "");
  const double identity_norm = std::sqrt(double(shape.n_head) * double(shape.head_dim));
  for (int il = 0; il < gate->n_layer(); ++il) {
    double mean_g = 0;
    for (float b : gate->bias(il)) mean_g += 1.0 / (1.0 + std::exp(-double(b)));
    std::printf("%5d  %.3f", il, mean_g / double(gate->bias(il).size()));
    if (projected) {
      // How far training moved the projection from the identity.
      const std::vector<float>& q = gate->query(il);
      const size_t d = size_t(shape.head_dim);
      double off = 0;
      for (size_t i = 0; i < q.size(); ++i) {
        const double e = q[i] - ((i / d) % d == i % d ? 1.0 : 0.0);
        off += e * e;
      }
      std::printf("  %.4f", std::sqrt(off) / identity_norm);
    }
    std::printf("\n");
  }
  std::printf("trained in %.0f s\nwrote %s (%zu parameters)\n", rep.seconds, a.out.c_str(), gate->n_params());
  return absl::OkStatus();
}

Status run(int argc, char** argv) {
  CalibrateArgs a;
  a.cal.gate.sink = 4;
  a.cal.gate.window = 1020;
  a.cal.gate.segment = 512;
  ArgParser p("calibrate",
              "Trains the EdgeInfinite memory gate of a frozen model by layer-wise distillation against full\n"
              "attention on calibration text, and writes the gate side file.");
  p.option("-m", "--model", "FILE", "GGUF model (default: $EDGEINF_MODEL or the bundled model)", &a.model);
  p.option("", "--text", "FILE", "calibration text (repeat or comma-separate for several files)",
           [&](const std::string& v) -> Status {
             for (absl::string_view f : absl::StrSplit(v, ',', absl::SkipEmpty())) a.texts.emplace_back(f);
             return absl::OkStatus();
           });
  p.option("-o", "--output", "FILE", "gate file to write (default MODEL.gate.gguf)", &a.out);
  // The gate's shape and kind (with --objective lm they come from the starting gate).
  auto shape_int = [&](const char* name, const char* meta, const char* help, int* dst) {
    p.option("", name, meta, help, [&a, name, dst](const std::string& v) -> Status {
      if (!absl::SimpleAtoi(v, dst)) return absl::InvalidArgumentError(absl::StrCat(name, ": not a number: ", v));
      a.given.insert(name);
      return absl::OkStatus();
    });
  };
  auto shape_str = [&](const char* name, const char* meta, const char* help, std::string* dst) {
    p.option("", name, meta, help, [&a, name, dst](const std::string& v) -> Status {
      *dst = v;
      a.given.insert(name);
      return absl::OkStatus();
    });
  };
  shape_str("--gate", "KIND", "gate kind: scalar or linear (default linear)", &a.kind);
  shape_int("--sink", "S", "sink tokens (default 4)", &a.cal.gate.sink);
  shape_int("--window", "W", "window tokens (default 1020)", &a.cal.gate.window);
  shape_int("--segment", "L", "segment tokens (default 512)", &a.cal.gate.segment);
  shape_str("--update", "RULE", "memory update: delta or linear (default delta)", &a.update);
  shape_str("--kv-type", "TYPE",
            "how the exact KV entries are stored while the gate learns to mix the memory in: f32, f16 or q8 "
            "(default f32; recorded in the gate file as the default of the sessions that use it)",
            &a.kv_type);
  p.option("", "--objective", "OBJ",
           "distill (layer-wise against full attention, the default), lm (the model's own next-token loss, "
           "from a starting gate) or sft (that loss on the answers of instruction samples made from the text)",
           &a.objective);
  p.option("", "--init", "FILE",
           "lm, sft: the starting gate (default: the model's gate file; 'none': a fresh gate of --gate's kind)",
           &a.init);
  p.option("", "--lr", "X", "lm, sft: Adam step of the biases (default 0.05)", &a.lm.lr);
  p.option("", "--query-lr", "X", "lm, sft: Adam step of the query projection's entries (default 0.001)",
           &a.lm.query_lr);
  p.flag("--query-projection",
         "lm, sft: train a per-head projection of the queries that read the memory as well (starts at the "
         "identity; kept when the starting gate has one)",
         [&] { a.query_projection = true; });
  p.option("", "--eval-every", "N", "lm, sft: steps between validation passes (default 10)", &a.lm.eval_every);
  p.option("", "--checkpoint", "FILE", "lm, sft: resumable training state, rewritten after every step",
           &a.lm.checkpoint);
  p.option("", "--seed", "N", "seed for the choice of sequences and tokens (default 1)", &a.cal.seed);
  p.option("", "--context", "N",
           "tokens per calibration sequence, or per sft document (default: distill min(8192, trained context), "
           "lm and sft 4096)",
           &a.cal.context);
  p.option("", "--sequences", "N",
           "calibration sequences or sft samples, held-out ones included (default: distill 6, lm 10, sft 24)",
           &a.sequences);
  p.option("", "--val-sequences", "N", "sequences or samples held out for validation (default: distill 1, lm 2, sft 4)",
           &a.val_sequences);
  p.option("", "--parts", "N", "sft: parts of the documents the part and outline questions are about (default 4)",
           &a.parts);
  p.option("", "--samples", "N", "distill: tokens sampled per sequence (default 1024)", &a.cal.samples_per_sequence);
  p.option("", "--steps", "N", "optimizer steps (default: distill 300 per stage, lm 60)", &a.steps);
  p.option("", "--weight-decay", "X", "L2 penalty of the linear gate's weights (default 0.001)",
           &a.cal.fit.weight_decay);
  p.option("-t", "--threads", "N", "CPU threads (default: all cores)", &a.threads);
  p.flag("--no-progress", "no progress output", [&] { a.progress = false; });
  EDGEINF_RETURN_IF_ERROR(p.parse(argc, argv, 2));
  if (a.texts.empty()) return absl::InvalidArgumentError("--text FILE is required");
  if (a.objective != "distill" && a.objective != "lm" && a.objective != "sft") {
    return absl::InvalidArgumentError(
        absl::StrCat("--objective: '", a.objective, "' is not one of distill, lm and sft"));
  }
  if (a.steps < 0 || a.sequences < 0 || a.val_sequences < 0) {
    return absl::InvalidArgumentError("--steps, --sequences and --val-sequences must be positive");
  }
  const bool lm = a.objective != "distill";
  if (!lm && (!a.init.empty() || !a.lm.checkpoint.empty() || a.query_projection)) {
    return absl::InvalidArgumentError("--init, --checkpoint and --query-projection belong to --objective lm and sft");
  }
  EDGEINF_ASSIGN_OR_RETURN(a.cal.gate.kind, parse_gate_kind(a.kind));
  EDGEINF_ASSIGN_OR_RETURN(a.cal.gate.update, parse_memory_update(a.update));
  EDGEINF_ASSIGN_OR_RETURN(a.cal.gate.kv_type, parse_kv_type(a.kv_type));
  if (a.threads < 0) return absl::InvalidArgumentError("--threads must be >= 0");
  if (a.threads == 0) a.threads = int(std::max(1u, std::thread::hardware_concurrency()));
  if (a.out.empty()) a.out = default_gate_path(a.model);

  EDGEINF_ASSIGN_OR_RETURN(std::unique_ptr<LlamaModel> model, LlamaModel::load(a.model));
  EDGEINF_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tok, Tokenizer::from_gguf(model->gguf()));
  Sha256 hash;
  std::vector<std::string> texts;
  for (const std::string& path : a.texts) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return absl::NotFoundError(absl::StrCat("cannot read calibration text '", path, "'"));
    std::stringstream ss;
    ss << in.rdbuf();
    texts.push_back(ss.str());
    hash.update(texts.back());
  }
  const std::string text_hash = hash.hex_digest();
  if (lm) return train_from_gate(a, *model, *tok, texts, text_hash);
  const std::vector<TokenId> tokens = encode_texts(*tok, texts);
  a.cal.fit.steps = a.steps > 0 ? a.steps : 300;
  a.cal.sequences = a.sequences > 0 ? a.sequences : 6;
  a.cal.validation_sequences = a.val_sequences > 0 ? a.val_sequences : 1;
  std::fprintf(stderr,
               "calibrate: %zu tokens of text (sha256 %s); %s gate, S=%d W=%d L=%d, %s update, %s KV; %d sequences "
               "(%d held out), %d samples each; seed %llu; %d threads\n",
               tokens.size(), text_hash.c_str(), a.kind.c_str(), a.cal.gate.sink, a.cal.gate.window, a.cal.gate.segment,
               a.update.c_str(), a.kv_type.c_str(), a.cal.sequences, a.cal.validation_sequences,
               a.cal.samples_per_sequence, static_cast<unsigned long long>(a.cal.seed), a.threads);

  kernels::cpu::ThreadPool pool(a.threads);
  CalibrationReport rep;
  CalibrationProgress progress;
  if (a.progress) progress = draw_progress;
  EDGEINF_ASSIGN_OR_RETURN(std::unique_ptr<MemoryGate> gate,
                           calibrate_gate(*model, tokens, text_hash, a.cal, pool, progress, &rep));
  EDGEINF_RETURN_IF_ERROR(gate->save(a.out));

  std::printf("layer  train  val   val_loss_scalar  val_loss  (relative to gate 0 = 1.000)  mean gate\n");
  for (size_t il = 0; il < rep.layers.size(); ++il) {
    const CalibrationLayerReport& l = rep.layers[il];
    double mean_g = 0;
    for (float b : gate->bias(int(il))) mean_g += 1.0 / (1.0 + std::exp(-double(b)));
    mean_g /= double(gate->bias(int(il)).size());
    std::printf("%5zu %6lld %5lld   %15.4f  %8.4f  %38s%.3f\n", il, static_cast<long long>(l.n_train),
                static_cast<long long>(l.n_val), l.fit.val_scalar, l.fit.val, "", mean_g);
  }
  std::printf("mean relative validation loss: scalar %.4f, %s %.4f; collect %.0f s, fit %.0f s\n", rep.mean_val_scalar,
              a.kind.c_str(), rep.mean_val, rep.collect_s, rep.fit_s);
  std::printf("wrote %s (%zu parameters)\n", a.out.c_str(), gate->n_params());
  return absl::OkStatus();
}

}  // namespace

int run_calibrate(int argc, char** argv) { return exit_code("calibrate", run(argc, argv)); }

}  // namespace edgeinf::cli
