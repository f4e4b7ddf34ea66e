// `edgeinf calibrate`: trains the EdgeInfinite memory gate of a frozen GGUF model on the CPU by
// layer-wise distillation against full attention (engine/calibration/gate_calibration.h) and writes the
// gate side file. Deterministic for a seed; progress on stderr; a per-layer report on stdout.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "engine/calibration/gate_calibration.h"
#include "engine/cli/args.h"
#include "engine/cli/commands.h"
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
  CalibrationOptions cal;
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
  p.option("", "--gate", "KIND", "gate kind: scalar or linear (default linear)", &a.kind);
  p.option("", "--sink", "S", "sink tokens (default 4)", &a.cal.gate.sink);
  p.option("", "--window", "W", "window tokens (default 1020)", &a.cal.gate.window);
  p.option("", "--segment", "L", "segment tokens (default 512)", &a.cal.gate.segment);
  p.option("", "--update", "RULE", "memory update: delta or linear (default delta)", &a.update);
  p.option("", "--kv-type", "TYPE",
           "how the exact KV entries are stored while the gate learns to mix the memory in: f32, f16 or q8 "
           "(default f32; recorded in the gate file as the default of the sessions that use it)",
           &a.kv_type);
  p.option("", "--seed", "N", "seed for the choice of sequences and tokens (default 1)", &a.cal.seed);
  p.option("", "--context", "N", "tokens per calibration sequence (default min(8192, trained context))",
           &a.cal.context);
  p.option("", "--sequences", "N", "calibration sequences, held-out ones included (default 6)", &a.cal.sequences);
  p.option("", "--val-sequences", "N", "sequences held out for validation (default 1)", &a.cal.validation_sequences);
  p.option("", "--samples", "N", "tokens sampled per sequence (default 1024)", &a.cal.samples_per_sequence);
  p.option("", "--steps", "N", "optimizer steps per stage (default 300)", &a.cal.fit.steps);
  p.option("", "--weight-decay", "X", "L2 penalty of the linear gate's weights (default 0.001)",
           &a.cal.fit.weight_decay);
  p.option("-t", "--threads", "N", "CPU threads (default: all cores)", &a.threads);
  p.flag("--no-progress", "no progress output", [&] { a.progress = false; });
  EDGEINF_RETURN_IF_ERROR(p.parse(argc, argv, 2));
  if (a.texts.empty()) return absl::InvalidArgumentError("--text FILE is required");
  EDGEINF_ASSIGN_OR_RETURN(a.cal.gate.kind, parse_gate_kind(a.kind));
  EDGEINF_ASSIGN_OR_RETURN(a.cal.gate.update, parse_memory_update(a.update));
  EDGEINF_ASSIGN_OR_RETURN(a.cal.gate.kv_type, parse_kv_type(a.kv_type));
  if (a.threads < 0) return absl::InvalidArgumentError("--threads must be >= 0");
  if (a.threads == 0) a.threads = int(std::max(1u, std::thread::hardware_concurrency()));
  if (a.out.empty()) a.out = default_gate_path(a.model);

  EDGEINF_ASSIGN_OR_RETURN(std::unique_ptr<LlamaModel> model, LlamaModel::load(a.model));
  EDGEINF_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tok, Tokenizer::from_gguf(model->gguf()));
  Sha256 hash;
  std::vector<TokenId> tokens;
  for (const std::string& path : a.texts) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return absl::NotFoundError(absl::StrCat("cannot read calibration text '", path, "'"));
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string text = ss.str();
    hash.update(text);
    const std::vector<TokenId> t = tok->encode(text, false, false);
    tokens.insert(tokens.end(), t.begin(), t.end());
  }
  const std::string text_hash = hash.hex_digest();
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
