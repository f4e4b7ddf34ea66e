// `edgeinf eval`: every KV policy at an equal KV budget on long-context tasks (perplexity of
// held-out prose, passkey, single- and multi-needle retrieval) across input lengths and needle
// depths. Each run happens in a forked child, so its peak resident memory is measured on its own;
// prints a table, writes JSON, and plots memory and time to first token against length.
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "engine/cli/args.h"
#include "engine/cli/commands.h"
#include "engine/cli/eval_tasks.h"
#include "engine/kv/kv_shape.h"
#include "engine/kv/memory_gate.h"
#include "engine/runtime/llama_context.h"
#include "engine/sampling/sampler.h"
#include "engine/tokenizer/utf8_stream.h"

namespace edgeinf::cli {
namespace {

struct EvalArgs {
  std::string model = default_model_path();
  std::string text = "data/kjv-nt.txt";
  std::string tasks = "ppl,passkey,needle,multineedle";
  std::string lengths = "2048,4096,8192,16384";
  std::string policies = "full,streaming,snapkv,pyramidkv,edgeinfinite";
  std::string depths = "0.1,0.5,0.9";
  std::string gate;
  std::string json = "eval.json";
  std::string plot = "eval.png";
  KvPolicyOptions kv;
  std::string device = "auto";
  int threads = 0;
  int seeds = 1;
  int full_max_length = 16384;
  int answer_tokens = 12;
  float fixed_gate = -1.0f;  // in (0, 1): an untrained scalar gate of that value
};

struct Run {
  std::string task, policy;
  int64_t length = 0;
  double depth = 0;
  uint64_t seed = 0;
};

struct Result {
  double score = NAN;  // retrieval: fraction found; ppl: perplexity
  double ttft_s = 0, prefill_tok_s = 0;
  double state_mb = 0, peak_rss_mb = 0;
  std::string answer, error;
};

template <typename T>
StatusOr<std::vector<T>> parse_list(const std::string& flag, const std::string& s) {
  std::vector<T> out;
  for (absl::string_view part : absl::StrSplit(s, ',', absl::SkipEmpty())) {
    if constexpr (std::is_same_v<T, std::string>) {
      out.emplace_back(part);
    } else {
      double v = 0;
      if (!absl::SimpleAtod(part, &v))
        return absl::InvalidArgumentError(absl::StrCat(flag, ": bad number '", std::string(part), "'"));
      out.push_back(T(v));
    }
  }
  if (out.empty()) return absl::InvalidArgumentError(absl::StrCat(flag, " is empty"));
  return out;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Runs one evaluation in this process (the forked child).
Result run_one(const LlamaModel& model, const Tokenizer& tok, const std::vector<TokenId>& prose, const EvalArgs& a,
               const MemoryGate* gate, const Run& run) {
  Result r;
  kernels::cpu::ThreadPool pool(a.threads);
  // The device is opened in the child that runs the evaluation (a CUDA context does not survive fork).
  auto backends = open_backends(a.device, model, pool);
  if (!backends.ok()) {
    r.error = std::string(backends.status().message());
    return r;
  }
  LlamaContextOptions opt;
  opt.kv = a.kv;
  opt.kv.name = run.policy;
  opt.kv.n_ctx = int(run.length + a.answer_tokens + 8);
  opt.kv.gate = gate_for_policy(opt.kv, gate);
  opt.n_batch = a.kv.segment;
  auto ctx = LlamaContext::create(backends->for_policy(run.policy), opt);
  if (!ctx.ok()) {
    r.error = std::string(ctx.status().message());
    return r;
  }
  LlamaContext& c = **ctx;
  const int n_vocab = model.config().n_vocab;
  const auto t0 = std::chrono::steady_clock::now();
  if (run.task == "ppl") {
    // Teacher-forced negative log-likelihood of tokens 1..length of a prose window.
    const size_t offset = size_t(run.seed * 7919 % std::max<size_t>(1, prose.size() - size_t(run.length) - 1));
    const std::span<const TokenId> window(prose.data() + offset, size_t(run.length) + 1);
    double nll = 0;
    for (size_t b = 0; b < size_t(run.length); b += size_t(c.n_batch())) {
      const size_t n = std::min(size_t(c.n_batch()), size_t(run.length) - b);
      auto logits = c.eval_all_logits(window.subspan(b, n));
      if (!logits.ok()) {
        r.error = std::string(logits.status().message());
        return r;
      }
      for (size_t t = 0; t < n; ++t) {
        const float* l = logits->data() + t * size_t(n_vocab);
        const float mx = *std::max_element(l, l + n_vocab);
        double sum = 0;
        for (int v = 0; v < n_vocab; ++v) sum += std::exp(double(l[v] - mx));
        nll -= double(l[window[b + t + 1]] - mx) - std::log(sum);
      }
    }
    r.ttft_s = seconds_since(t0);  // the whole input, as for the retrieval tasks
    r.prefill_tok_s = double(run.length) / r.ttft_s;
    r.score = std::exp(nll / double(run.length));
  } else {
    RetrievalPrompt p = run.task == "passkey" ? passkey_prompt(tok, run.length, run.depth, run.seed)
                                              : needle_prompt(tok, prose, run.length, run.depth,
                                                              run.task == "multineedle" ? 4 : 1, run.seed);
    auto logits = c.eval(p.tokens);
    if (!logits.ok()) {
      r.error = std::string(logits.status().message());
      return r;
    }
    r.ttft_s = seconds_since(t0);
    r.prefill_tok_s = double(p.tokens.size()) / r.ttft_s;
    SamplingParams greedy;
    greedy.temperature = 0;
    Sampler sampler(greedy, n_vocab);
    Utf8Stream utf8;
    std::vector<float> last(logits->begin(), logits->end());
    for (int i = 0; i < a.answer_tokens; ++i) {
      const TokenId next = sampler.sample(last);
      if (tok.is_eog(next)) break;
      r.answer += utf8.push(tok.token_to_piece(next));
      auto l = c.eval(std::span<const TokenId>(&next, 1));
      if (!l.ok()) break;
      last.assign(l->begin(), l->end());
    }
    r.answer += utf8.flush();
    r.score = retrieval_score(p, r.answer);
  }
  r.state_mb = double(c.policy().state_bytes()) / (1 << 20);
  return r;
}

std::string json_escape(const std::string& s) {
  std::string out;
  for (char ch : s) {
    if (ch == '"' || ch == '\\') out += '\\';
    if (static_cast<unsigned char>(ch) < 0x20) {
      out += absl::StrFormat("\\u%04x", ch);
      continue;
    }
    out += ch;
  }
  return out;
}

// Forks, runs, and collects the child's result and its peak RSS.
Result run_forked(const LlamaModel& model, const Tokenizer& tok, const std::vector<TokenId>& prose, const EvalArgs& a,
                  const MemoryGate* gate, const Run& run) {
  int fds[2];
  Result r;
  if (pipe(fds) != 0) {
    r.error = "pipe failed";
    return r;
  }
  std::fflush(stdout);
  const pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    const Result c = run_one(model, tok, prose, a, gate, run);
    // Numbers, then the two strings length-prefixed, so any bytes survive the trip.
    const std::string line = absl::StrFormat("%.17g %.17g %.17g %.17g %d %d\n", c.score, c.ttft_s, c.prefill_tok_s,
                                             c.state_mb, c.answer.size(), c.error.size()) +
                             c.answer + c.error;
    (void)!write(fds[1], line.data(), line.size());
    _exit(0);
  }
  close(fds[1]);
  std::string data;
  char buf[4096];
  for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) > 0;) data.append(buf, size_t(n));
  close(fds[0]);
  int status = 0;
  struct rusage usage {};
  wait4(pid, &status, 0, &usage);
  std::istringstream in(data);
  size_t n_answer = 0, n_error = 0;
  in >> r.score >> r.ttft_s >> r.prefill_tok_s >> r.state_mb >> n_answer >> n_error;
  in.ignore();
  const size_t body = in ? size_t(in.tellg()) : data.size();
  if (!WIFEXITED(status) || !in || body + n_answer + n_error != data.size()) {
    r.error = "the evaluation process died";
  } else {
    r.answer = data.substr(body, n_answer);
    r.error = data.substr(body + n_answer, n_error);
  }
  r.peak_rss_mb = double(usage.ru_maxrss) / 1024.0;
  return r;
}

Status write_plot(const std::string& png, const std::vector<std::pair<Run, Result>>& rows) {
  // Data: per length and policy, TTFT (the fastest task: least disturbed by other load) and peak
  // RSS (the largest); one line per policy evaluated.
  std::map<int64_t, std::map<std::string, std::pair<double, double>>> points;
  std::vector<std::string> policies;
  for (const auto& [run, res] : rows) {
    if (!res.error.empty()) continue;
    if (std::find(policies.begin(), policies.end(), run.policy) == policies.end()) policies.push_back(run.policy);
    auto [it, fresh] = points[run.length].try_emplace(run.policy, res.ttft_s, res.peak_rss_mb);
    it->second.first = std::min(it->second.first, res.ttft_s);
    it->second.second = std::max(it->second.second, res.peak_rss_mb);
  }
  const std::string dat = png + ".dat", gp = png + ".gp";
  std::ofstream d(dat);
  for (const auto& [len, by] : points) {
    d << len;
    for (bool rss : {false, true}) {
      for (const std::string& p : policies) {
        auto it = by.find(p);
        d << " " << (it == by.end() ? std::string("NaN") : absl::StrCat(rss ? it->second.second : it->second.first));
      }
    }
    d << "\n";
  }
  d.close();
  // Columns: 1 length, 2.. TTFT per policy, then peak RSS per policy.
  auto plot = [&](size_t first_column) {
    std::string cmd = "plot ";
    for (size_t i = 0; i < policies.size(); ++i) {
      absl::StrAppend(&cmd, i == 0 ? absl::StrCat("'", dat, "'") : std::string(", ''"), " using 1:", first_column + i,
                      " with linespoints title '", policies[i], "'");
    }
    return cmd + "\n";
  };
  std::ofstream g(gp);
  g << "set terminal pngcairo size 1200,480 font ',11'\nset output '" << png << "'\nset multiplot layout 1,2\n"
    << "set logscale x 2\nset xlabel 'input tokens'\nset key left top\nset grid\n"
    << "set ylabel 'peak resident memory (MiB)'\nset title 'Peak memory'\n"
    << plot(2 + policies.size()) << "set ylabel 'seconds'\nset title 'Time to first token'\n"
    << plot(2) << "unset multiplot\n";
  g.close();
  if (policies.empty()) return absl::FailedPreconditionError("no successful run to plot");
  if (std::system(absl::StrCat("gnuplot '", gp, "' 2>/dev/null").c_str()) != 0) {
    return absl::UnavailableError(absl::StrCat("gnuplot failed or is missing; data left in ", dat));
  }
  return absl::OkStatus();
}

Status run(int argc, char** argv) {
  EvalArgs a;
  a.kv.sink = 4;
  a.kv.window = 1020;
  a.kv.segment = 512;
  KvShapeRequest shape;
  ArgParser p("eval", "Evaluates KV policies at an equal KV budget on long-context tasks.");
  p.option("-m", "--model", "FILE", "GGUF model", &a.model);
  p.option("", "--text", "FILE", "held-out prose for ppl and needle haystacks (default data/kjv-nt.txt)", &a.text);
  p.option("", "--tasks", "LIST", "ppl, passkey, needle, multineedle (default all)", &a.tasks);
  p.option("", "--lengths", "LIST", "input lengths in tokens (default 2048,4096,8192,16384)", &a.lengths);
  p.option("", "--policies", "LIST", "policies (default full,streaming,snapkv,pyramidkv,edgeinfinite)", &a.policies);
  p.option("", "--depths", "LIST", "needle depths in [0, 1] (default 0.1,0.5,0.9)", &a.depths);
  p.option("", "--seeds", "N", "seeds per configuration (default 1)", &a.seeds);
  p.option("", "--sink", "S", "sink tokens (default: the gate's, else 4)", &shape.sink);
  p.option("", "--window", "W", "window tokens (default: the gate's, else 1020: S + W = 1024)", &shape.window);
  p.option("", "--segment", "L", "segment tokens (default: the gate's, else 512)", &shape.segment);
  p.option("", "--kv-type", "TYPE", kKvTypeHelp, &shape.kv_type);
  p.option("", "--update", "RULE", "edgeinfinite memory update: delta or linear (default: the gate's, else delta)",
           &shape.update);
  p.option("", "--gate", "FILE", "edgeinfinite gate file (default MODEL.gate.gguf if present; 'none': no gate)",
           &a.gate);
  p.option("", "--fixed-gate", "G", "edgeinfinite without a gate file: an untrained gate of value G in (0, 1)",
           &a.fixed_gate);
  p.option("", "--full-max-length", "N", "longest input run with full KV (default 16384)", &a.full_max_length);
  p.option("", "--json", "FILE", "results as JSON (default eval.json)", &a.json);
  p.option("", "--plot", "FILE", "PNG of memory and TTFT against length (default eval.png; '' = none)", &a.plot);
  p.option("-t", "--threads", "N", "CPU threads (default: all cores)", &a.threads);
  p.option("", "--device", "NAME", kDeviceHelp, &a.device);
  EDGEINF_RETURN_IF_ERROR(p.parse(argc, argv, 2));
  if (a.threads <= 0) a.threads = int(std::max(1u, std::thread::hardware_concurrency()));
  EDGEINF_ASSIGN_OR_RETURN(std::vector<std::string> tasks, parse_list<std::string>("--tasks", a.tasks));
  EDGEINF_ASSIGN_OR_RETURN(std::vector<int64_t> lengths, parse_list<int64_t>("--lengths", a.lengths));
  EDGEINF_ASSIGN_OR_RETURN(std::vector<std::string> policies, parse_list<std::string>("--policies", a.policies));
  for (const std::string& pol : policies) {
    if (Status st = known_kv_policy(pol); !st.ok())
      return Status(st.code(), absl::StrCat("--policies: ", st.message()));
  }
  EDGEINF_ASSIGN_OR_RETURN(std::vector<double> depths, parse_list<double>("--depths", a.depths));

  EDGEINF_ASSIGN_OR_RETURN(std::unique_ptr<LlamaModel> model, LlamaModel::load(a.model));
  EDGEINF_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tok, Tokenizer::from_gguf(model->gguf()));
  std::ifstream in(a.text, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read '", a.text, "' (scripts/eval-data writes it)"));
  std::stringstream ss;
  ss << in.rdbuf();
  const std::vector<TokenId> prose = tok->encode(ss.str(), false, false);
  std::unique_ptr<MemoryGate> gate;
  EDGEINF_ASSIGN_OR_RETURN(gate,
                           load_default_gate(a.model, a.gate, AttentionShape::of(*model), model->gguf().fingerprint()));
  EDGEINF_ASSIGN_OR_RETURN(const std::string shape_warning, resolve_kv_shape(shape, gate.get(), &a.kv));
  if (!shape_warning.empty()) std::fprintf(stderr, "warning: %s\n", shape_warning.c_str());
  a.kv.budget = a.kv.sink + a.kv.window;  // equal exact-KV budget for every bounded policy
  std::string gate_name =
      gate ? absl::StrCat(gate_kind_name(gate->config().kind), " (trained)") : "none (memory unused)";
  if (!gate && a.fixed_gate > 0 && a.fixed_gate < 1) {
    gate = fixed_gate(a.kv, AttentionShape::of(*model), a.fixed_gate);
    gate_name = absl::StrCat("fixed ", a.fixed_gate, " (untrained)");
  }
  std::fprintf(stderr, "eval: %zu tokens of prose from %s; S=%d W=%d L=%d budget=%d; KV %s; update %s; gate: %s\n",
               prose.size(), a.text.c_str(), a.kv.sink, a.kv.window, a.kv.segment, a.kv.budget,
               kv_type_name(a.kv.kv_type), memory_update_name(a.kv.update), gate_name.c_str());

  std::vector<Run> runs;
  for (const std::string& task : tasks) {
    for (int64_t len : lengths) {
      if (task == "ppl" && int64_t(prose.size()) <= len + 1) {
        return absl::InvalidArgumentError(absl::StrCat("the text has only ", prose.size(), " tokens"));
      }
      const std::vector<double> task_depths =
          task == "ppl" || task == "multineedle" ? std::vector<double>{0.0} : depths;
      for (double depth : task_depths) {
        for (int seed = 1; seed <= a.seeds; ++seed) {
          for (const std::string& pol : policies) runs.push_back({task, pol, len, depth, uint64_t(seed)});
        }
      }
    }
  }
  std::vector<std::pair<Run, Result>> rows;
  std::printf("%-12s %-13s %7s %6s %9s %8s %10s %9s %9s  %s\n", "task", "policy", "length", "depth", "score", "ttft_s",
              "prefill/s", "state_MB", "peak_MB", "note");
  for (const Run& run : runs) {
    Result res;
    std::string note;
    const bool beyond = run.length > model->config().n_ctx_train;
    const bool grows = kv_policy_traits(run.policy).keeps_everything;
    if (grows && run.length > a.full_max_length) {
      res.error = absl::StrCat("not run: full KV beyond ", a.full_max_length, " tokens (set --full-max-length)");
    } else {
      res = run_forked(*model, *tok, prose, a, gate.get(), run);
    }
    if (grows && beyond) note = "beyond the model's native window";
    if (!res.error.empty()) note = res.error;
    std::printf("%-12s %-13s %7lld %6.2f %9.3f %8.2f %10.1f %9.1f %9.1f  %s\n", run.task.c_str(), run.policy.c_str(),
                static_cast<long long>(run.length), run.depth, res.score, res.ttft_s, res.prefill_tok_s, res.state_mb,
                res.peak_rss_mb, note.c_str());
    std::fflush(stdout);
    rows.push_back({run, res});
  }

  if (!a.json.empty()) {
    std::ofstream j(a.json);
    j << "{\"model\":\"" << json_escape(a.model) << "\",\"text\":\"" << json_escape(a.text)
      << "\",\"sink\":" << a.kv.sink << ",\"window\":" << a.kv.window << ",\"segment\":" << a.kv.segment
      << ",\"budget\":" << a.kv.budget << ",\"kv_type\":\"" << kv_type_name(a.kv.kv_type) << "\",\"gate\":\""
      << json_escape(gate_name) << "\",\"update\":\"" << memory_update_name(a.kv.update) << "\",\"runs\":[";
    for (size_t i = 0; i < rows.size(); ++i) {
      const auto& [run, res] = rows[i];
      j << (i ? "," : "") << "{\"task\":\"" << run.task << "\",\"policy\":\"" << run.policy
        << "\",\"length\":" << run.length << ",\"depth\":" << run.depth << ",\"seed\":" << run.seed
        << ",\"score\":" << (std::isnan(res.score) ? std::string("null") : absl::StrCat(res.score))
        << ",\"ttft_s\":" << res.ttft_s << ",\"prefill_tok_s\":" << res.prefill_tok_s
        << ",\"state_mb\":" << res.state_mb << ",\"peak_rss_mb\":" << res.peak_rss_mb
        << ",\"beyond_native_window\":" << (run.length > model->config().n_ctx_train ? "true" : "false")
        << ",\"answer\":\"" << json_escape(res.answer) << "\",\"error\":\"" << json_escape(res.error) << "\"}";
    }
    j << "]}\n";
  }
  if (!a.plot.empty()) {
    const Status s = write_plot(a.plot, rows);
    if (!s.ok()) std::fprintf(stderr, "warning: %s\n", std::string(s.message()).c_str());
  }
  return absl::OkStatus();
}

}  // namespace

int run_eval(int argc, char** argv) { return exit_code("eval", run(argc, argv)); }

}  // namespace edgeinf::cli
