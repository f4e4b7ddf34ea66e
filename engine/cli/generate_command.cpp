// `edgeinf generate`: stream a completion of a prompt (or a chat turn) to stdout; prefill
// progress and prefill/decode speed go to stderr.
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/cli/args.h"
#include "engine/cli/commands.h"
#include "engine/kv/kv_shape.h"
#include "engine/kv/memory_gate.h"
#include "engine/runtime/generator.h"
#include "engine/runtime/llama_context.h"
#include "engine/tokenizer/chat_template.h"
#include "engine/tokenizer/tokenizer.h"

namespace edgeinf::cli {
namespace {

struct GenerateArgs {
  std::string model = default_model_path();
  std::string prompt;
  std::string prompt_file;
  std::string system;
  bool chat = false;
  bool progress = true;
  int threads = 0;
  KvPolicyOptions kv;
  KvShapeRequest shape;  // --sink, --window, --segment, --update as given
  std::string gate;
  std::string device = "auto";
  int n_batch = 256;
  GenerateOptions gen;
};

Status read_file(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read prompt file '", path, "'"));
  std::stringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return absl::OkStatus();
}

// A one-line progress bar on stderr, redrawn in place.
void draw_progress(int done, int total) {
  constexpr int kWidth = 40;
  const int filled = total > 0 ? int(int64_t(done) * kWidth / total) : kWidth;
  std::string bar(size_t(filled), '#');
  bar.resize(kWidth, '.');
  std::fprintf(stderr, "\rprefill [%s] %d/%d tokens", bar.c_str(), done, total);
  if (done == total) std::fputs("\r\033[K", stderr);
  std::fflush(stderr);
}

Status run(int argc, char** argv) {
  GenerateArgs a;
  a.gen.sampling.seed = std::random_device{}();
  ArgParser p("generate", "Streams a completion from a GGUF model to stdout.");
  p.option("-m", "--model", "FILE", "GGUF model (default: $EDGEINF_MODEL or the bundled model)", &a.model);
  p.option("-p", "--prompt", "TEXT", "prompt text", &a.prompt);
  p.option("-f", "--file", "FILE", "read the prompt from a file", &a.prompt_file);
  p.flag("--chat", "wrap the prompt as a user turn in the model's chat template", [&] { a.chat = true; });
  p.option("", "--system", "TEXT", "system message for --chat", &a.system);
  p.option("-n", "--max-tokens", "N", "tokens to generate (default 256)", &a.gen.max_tokens);
  p.option("", "--temp", "T", "temperature; 0 = greedy (default 0.8)", &a.gen.sampling.temperature);
  p.option("", "--top-k", "K", "top-k, 0 = off (default 40)", &a.gen.sampling.top_k);
  p.option("", "--top-p", "P", "top-p, 1 = off (default 0.95)", &a.gen.sampling.top_p);
  p.option("", "--min-p", "P", "min-p, 0 = off (default 0.05)", &a.gen.sampling.min_p);
  p.option("", "--repeat-penalty", "R", "repetition penalty, 1 = off (default 1)", &a.gen.sampling.repeat_penalty);
  p.option("", "--repeat-last-n", "N", "tokens the penalty looks back over (default 64)",
           &a.gen.sampling.repeat_last_n);
  p.option("-s", "--seed", "N", "random seed (default: random, printed at the end)", &a.gen.sampling.seed);
  p.option("", "--stop", "STR", "stop string (repeatable)", [&](const std::string& v) {
    a.gen.stop.push_back(v);
    return absl::OkStatus();
  });
  p.flag("--ignore-eos", "keep generating past end-of-generation tokens", [&] { a.gen.ignore_eos = true; });
  p.option("-t", "--threads", "N", "CPU threads (default: all cores)", &a.threads);
  p.option("", "--device", "NAME", kDeviceHelp, &a.device);
  p.option("-c", "--ctx-size", "N", "full policy: context size in tokens (default: the model's)", &a.kv.n_ctx);
  p.option("", "--policy", "NAME", "KV policy: full, streaming, edgeinfinite (default full)", &a.kv.name);
  p.option("", "--sink", "S", "sink tokens kept exactly (default: the gate's, else 4)", &a.shape.sink);
  p.option("", "--window", "W", "recent tokens kept exactly (default: the gate's, else 1024)", &a.shape.window);
  p.option("", "--segment", "L", "segment size for prefill and folding (default: the gate's, else 512)",
           &a.shape.segment);
  p.option("", "--budget", "B", "snapkv/pyramidkv: KV entries per head (default S + W)", &a.kv.budget);
  p.option("", "--kv-type", "TYPE", kKvTypeHelp, &a.shape.kv_type);
  p.option("", "--update", "RULE", "edgeinfinite memory update: delta or linear (default: the gate's, else delta)",
           &a.shape.update);
  p.option("", "--gate", "FILE", "edgeinfinite gate file (default: MODEL.gate.gguf if present; 'none': no gate)",
           &a.gate);
  p.option("-b", "--batch-size", "N", "prefill batch size (default 256)", &a.n_batch);
  p.flag("--no-progress", "no prefill progress bar", [&] { a.progress = false; });
  EDGEINF_RETURN_IF_ERROR(p.parse(argc, argv, 2));

  if (a.prompt.empty() == a.prompt_file.empty()) {
    return absl::InvalidArgumentError("give exactly one of -p TEXT or -f FILE (see edgeinf generate --help)");
  }
  if (!a.prompt_file.empty()) EDGEINF_RETURN_IF_ERROR(read_file(a.prompt_file, &a.prompt));
  if (a.threads < 0 || a.n_batch <= 0) return absl::InvalidArgumentError("--threads must be >= 0, --batch-size > 0");
  if (a.threads == 0) a.threads = int(std::max(1u, std::thread::hardware_concurrency()));

  EDGEINF_ASSIGN_OR_RETURN(std::unique_ptr<LlamaModel> model, LlamaModel::load(a.model));
  EDGEINF_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer, Tokenizer::from_gguf(model->gguf()));

  std::string text = a.prompt;
  if (a.chat) {
    std::vector<ChatMessage> messages;
    if (!a.system.empty()) messages.push_back({"system", a.system});
    messages.push_back({"user", a.prompt});
    EDGEINF_ASSIGN_OR_RETURN(text, apply_chat_template(tokenizer->chat_template(), messages, true));
  }
  const std::vector<TokenId> prompt = tokenizer->encode(text, /*add_special=*/true, /*parse_special=*/a.chat);
  if (prompt.empty()) return absl::InvalidArgumentError("the prompt encodes to no tokens");

  kernels::cpu::ThreadPool pool(a.threads);
  std::unique_ptr<MemoryGate> gate;
  const KvPolicyTraits* traits = find_kv_policy(a.kv.name);  // unknown: refused with the list below
  if (traits != nullptr && traits->compresses) {
    EDGEINF_ASSIGN_OR_RETURN(
        gate, load_default_gate(a.model, a.gate, AttentionShape::of(*model), model->gguf().fingerprint()));
    if (gate) {
      a.kv.gate = gate.get();
    } else {
      std::fprintf(stderr, "warning: no gate file (%s); the memory is kept but not read: StreamingLLM behaviour\n",
                   a.gate == "none" ? "--gate none" : default_gate_path(a.model).c_str());
    }
  }
  EDGEINF_ASSIGN_OR_RETURN(const std::string shape_warning, resolve_kv_shape(a.shape, gate.get(), &a.kv));
  if (!shape_warning.empty()) std::fprintf(stderr, "warning: %s\n", shape_warning.c_str());
  EDGEINF_ASSIGN_OR_RETURN(const Backends backends, open_backends(a.device, *model, pool));
  LlamaContextOptions copt;
  copt.kv = a.kv;
  copt.n_batch = a.n_batch;
  EDGEINF_ASSIGN_OR_RETURN(std::unique_ptr<LlamaContext> context,
                           LlamaContext::create(backends.for_policy(a.kv.name), copt));
  LlamaContext& ctx = *context;
  if (ctx.capacity() <= int64_t(prompt.size())) {
    return absl::OutOfRangeError(absl::StrCat("the prompt has ", prompt.size(), " tokens; the context size is ",
                                              ctx.capacity(),
                                              " (raise it with --ctx-size, or use --policy edgeinfinite)"));
  }

  const bool show_progress = a.progress && isatty(STDERR_FILENO);
  GenerateCallbacks cb;
  if (show_progress) cb.on_prefill_progress = draw_progress;
  cb.on_text = [](std::string_view piece, TokenId) {
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
    return true;
  };
  EDGEINF_ASSIGN_OR_RETURN(GenerateStats stats, generate(ctx, *tokenizer, prompt, a.gen, cb));
  std::string policy_detail;
  if (traits != nullptr && traits->compresses) {
    policy_detail =
        absl::StrCat(" (S=", a.kv.sink, " W=", a.kv.window, " L=", a.kv.segment, ", ", memory_update_name(a.kv.update),
                     " update, ", gate ? absl::StrCat(gate->describe(), " gate") : "no gate", ")");
  }
  std::fputs("\n", stdout);
  std::fflush(stdout);
  std::fprintf(stderr,
               "prefill: %d tokens in %.2f s (%.1f tok/s) | decode: %d tokens in %.2f s (%.1f tok/s) | finish: %s | "
               "seed %llu | device %s | threads %d | policy %s%s, state %.1f MiB, weights %.1f MiB\n",
               stats.prompt_tokens, stats.prefill_seconds,
               stats.prefill_seconds > 0 ? stats.prompt_tokens / stats.prefill_seconds : 0.0, stats.generated_tokens,
               stats.decode_seconds, stats.decode_seconds > 0 ? stats.generated_tokens / stats.decode_seconds : 0.0,
               finish_reason_name(stats.finish), static_cast<unsigned long long>(a.gen.sampling.seed),
               device_label(ctx.backend()).c_str(), a.threads, ctx.policy().name(), policy_detail.c_str(),
               double(ctx.state_bytes()) / (1 << 20), double(model->weight_bytes()) / (1 << 20));
  return absl::OkStatus();
}

}  // namespace

int run_generate(int argc, char** argv) { return exit_code("generate", run(argc, argv)); }

}  // namespace edgeinf::cli
