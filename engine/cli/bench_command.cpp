// `edgeinf bench`: prefill and decode throughput on deterministic pseudo-random tokens, printed
// as a table and as one JSON line for scripts/bench (which runs the llama.cpp side of the comparison).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "engine/cli/args.h"
#include "engine/cli/commands.h"
#include "engine/kv/kv_shape.h"
#include "engine/kv/memory_gate.h"
#include "engine/runtime/llama_context.h"

namespace edgeinf::cli {
namespace {

// The benchmark's token stream; scripts/bench uses the same formula for the peer.
TokenId bench_token(int64_t i, int n_vocab) {
  return TokenId(100 + (uint64_t(i) * 2654435761u) % uint64_t(n_vocab - 100));
}

std::vector<TokenId> bench_tokens(int64_t offset, int64_t n, int n_vocab) {
  std::vector<TokenId> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out[size_t(i)] = bench_token(offset + i, n_vocab);
  return out;
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

Status run(int argc, char** argv) {
  std::string model_path = default_model_path();
  std::string prefill_list = "512,2048";
  int depth = 512, n_decode = 64, threads = 0, reps = 3, n_batch = 512;
  std::string device = "auto", policy = "full", gate_path;
  KvShapeRequest shape;
  float fixed_gate = -1.0f;
  ArgParser p("bench", "Measures prefill and decode tokens/s of a KV policy (default full KV).");
  p.option("-m", "--model", "FILE", "GGUF model", &model_path);
  p.option("", "--prefill", "N,N", "prompt lengths to time (default 512,2048)", &prefill_list);
  p.option("", "--depth", "N", "context depth before decoding (default 512)", &depth);
  p.option("", "--decode", "N", "tokens to decode (default 64)", &n_decode);
  p.option("-t", "--threads", "N", "CPU threads (default: all cores)", &threads);
  p.option("", "--device", "NAME", kDeviceHelp, &device);
  p.option("-r", "--reps", "N", "repetitions; the median is reported (default 3)", &reps);
  p.option("-b", "--batch-size", "N", "prefill batch size (default 512; a sink/window policy's is its segment)",
           &n_batch);
  p.option("", "--policy", "NAME", "KV policy (default full; its context is what the test needs)", &policy);
  p.option("", "--sink", "S", "sink tokens (default: the gate's, else 4)", &shape.sink);
  p.option("", "--window", "W", "window tokens (default: the gate's, else 1024)", &shape.window);
  p.option("", "--segment", "L", "segment (default: the gate's, else 512)", &shape.segment);
  p.option("", "--kv-type", "TYPE", kKvTypeHelp, &shape.kv_type);
  p.option("", "--gate", "FILE", "edgeinfinite gate file (default: MODEL.gate.gguf if present; 'none': no gate)",
           &gate_path);
  p.option("", "--fixed-gate", "G", "edgeinfinite without a gate file: an untrained scalar gate of value G in (0, 1)",
           &fixed_gate);
  EDGEINF_RETURN_IF_ERROR(p.parse(argc, argv, 2));
  EDGEINF_RETURN_IF_ERROR(known_kv_policy(policy));
  std::vector<int> prefill;
  for (absl::string_view s : absl::StrSplit(prefill_list, ',', absl::SkipEmpty())) {
    int n = 0;
    if (!absl::SimpleAtoi(s, &n) || n <= 0) return absl::InvalidArgumentError("--prefill expects positive integers");
    prefill.push_back(n);
  }
  if (depth < 0 || n_decode <= 0 || reps <= 0 || threads < 0 || n_batch <= 0) {
    return absl::InvalidArgumentError("--depth >= 0, --decode, --reps, --batch-size > 0 and --threads >= 0 required");
  }
  if (threads == 0) threads = int(std::max(1u, std::thread::hardware_concurrency()));

  EDGEINF_ASSIGN_OR_RETURN(std::unique_ptr<LlamaModel> model, LlamaModel::load(model_path));
  const int n_vocab = model->config().n_vocab;
  kernels::cpu::ThreadPool pool(threads);
  int max_ctx = depth + n_decode;
  for (int n : prefill) max_ctx = std::max(max_ctx, n);
  EDGEINF_ASSIGN_OR_RETURN(const Backends backends, open_backends(device, *model, pool));
  LlamaContextOptions copt;
  copt.kv.name = policy;
  copt.kv.n_ctx = max_ctx;
  copt.n_batch = n_batch;
  std::unique_ptr<MemoryGate> gate;
  if (kv_policy_traits(policy).compresses) {
    EDGEINF_ASSIGN_OR_RETURN(
        gate, load_default_gate(model_path, gate_path, AttentionShape::of(*model), model->gguf().fingerprint()));
  }
  EDGEINF_RETURN_IF_ERROR(resolve_kv_shape(shape, gate.get(), &copt.kv).status());
  bool fixed = false;
  if (!gate && fixed_gate > 0 && fixed_gate < 1 && kv_policy_traits(policy).compresses) {
    gate = edgeinf::fixed_gate(copt.kv, AttentionShape::of(*model), fixed_gate);
    fixed = true;
  }
  copt.kv.gate = gate_for_policy(copt.kv, gate.get());
  ModelBackend& backend = backends.for_policy(copt.kv.name);
  std::string gate_name = "none";
  if (copt.kv.gate != nullptr) {
    gate_name = fixed ? absl::StrCat("fixed ", fixed_gate) : copt.kv.gate->describe();
  }
  std::printf("device: %s\npolicy: %s (S=%d W=%d L=%d, gate %s)\n", device_label(backend).c_str(), policy.c_str(),
              copt.kv.sink, copt.kv.window, copt.kv.segment, gate_name.c_str());
  EDGEINF_ASSIGN_OR_RETURN(std::unique_ptr<LlamaContext> context, LlamaContext::create(backend, copt));
  LlamaContext& ctx = *context;

  std::vector<std::string> json;
  std::printf("%-10s %-12s %10s %12s\n", "test", "tokens", "seconds", "tok/s");
  for (int n : prefill) {
    const std::vector<TokenId> tokens = bench_tokens(0, n, n_vocab);
    std::vector<double> times;
    for (int r = 0; r < reps; ++r) {
      ctx.reset();
      const double t0 = now_seconds();
      EDGEINF_RETURN_IF_ERROR(ctx.eval(tokens).status());
      times.push_back(now_seconds() - t0);
    }
    const double t = median(times);
    std::printf("%-10s %-12d %10.3f %12.1f\n", "prefill", n, t, n / t);
    json.push_back(
        absl::StrCat("{\"test\":\"prefill\",\"tokens\":", n, ",\"seconds\":", t, ",\"tok_per_s\":", n / t, "}"));
  }
  {
    const std::vector<TokenId> context = bench_tokens(0, depth, n_vocab);
    const std::vector<TokenId> decode = bench_tokens(depth, n_decode, n_vocab);
    std::vector<double> times;
    for (int r = 0; r < reps; ++r) {
      ctx.reset();
      if (depth > 0) EDGEINF_RETURN_IF_ERROR(ctx.eval(context).status());
      const double t0 = now_seconds();
      for (TokenId t : decode) EDGEINF_RETURN_IF_ERROR(ctx.eval(std::span<const TokenId>(&t, 1)).status());
      times.push_back(now_seconds() - t0);
    }
    const double t = median(times);
    std::printf("%-10s %-12s %10.3f %12.1f\n", "decode", absl::StrCat(n_decode, "@d", depth).c_str(), t, n_decode / t);
    json.push_back(absl::StrCat("{\"test\":\"decode\",\"tokens\":", n_decode, ",\"depth\":", depth, ",\"seconds\":", t,
                                ",\"tok_per_s\":", n_decode / t, "}"));
  }
  std::printf("JSON {\"engine\":\"edgeinf\",\"device\":\"%s\",\"policy\":\"%s\",\"threads\":%d,\"results\":[%s]}\n",
              backend.device(), policy.c_str(), threads, absl::StrJoin(json, ",").c_str());
  return absl::OkStatus();
}

}  // namespace

int run_bench(int argc, char** argv) { return exit_code("bench", run(argc, argv)); }

}  // namespace edgeinf::cli
