// `edgeinf eval`: every KV policy at an equal KV budget on long-context tasks (perplexity of
// held-out prose, passkey, single- and multi-needle retrieval, questions about facts stated at
// several depths of a document) across input lengths and depths. Each run happens in a forked
// child, so its peak resident memory is measured on its own; prints a table and, over seeds, means
// with 95 % confidence intervals; writes JSON, and plots memory and time to first token against
// length and accuracy against depth.
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
#include <tuple>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "engine/cli/args.h"
#include "engine/cli/commands.h"
#include "engine/cli/eval_tasks.h"
#include "engine/kv/kv_shape.h"
#include "engine/kv/memory_gate.h"
#include "engine/runtime/llama_context.h"
#include "engine/sampling/sampler.h"
#include "engine/tokenizer/document_sections.h"
#include "engine/tokenizer/utf8_stream.h"

namespace edgeinf::cli {
namespace {

struct EvalArgs {
  std::string model = default_model_path();
  std::string text = "data/kjv-nt.txt";
  std::string tasks = "ppl,passkey,needle,multineedle,docqa,coverage";  // docqa-loss: on request
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
  int sections = 8;          // coverage: sections per document
  int summary_tokens = 192;  // coverage: length of the summary
  float fixed_gate = -1.0f;  // in (0, 1): an untrained scalar gate of that value
};

constexpr const char* kTasks[] = {"ppl", "passkey", "needle", "multineedle", "docqa", "docqa-loss", "coverage"};

struct Run {
  std::string task, policy;
  int64_t length = 0;
  double depth = 0;  // docqa, coverage: unused (one run scores every depth)
  uint64_t seed = 0;
};

// What every run reads: the model, the prose (whole, and by paragraph for coverage), the depths.
struct Inputs {
  const LlamaModel& model;
  const Tokenizer& tok;
  const std::vector<TokenId>& prose;
  const std::vector<std::vector<TokenId>>& paragraphs;
  const std::vector<double>& depths;
  const MemoryGate* gate;
};

// One scored answer of a run: docqa has one per depth, coverage one per section, the others one.
struct Item {
  double depth = 0;
  double score = NAN;  // retrieval and docqa: fraction right; ppl: perplexity; docqa-loss: nats per token
  std::string answer;
};

struct Result {
  std::vector<Item> items;
  double ttft_s = 0, prefill_tok_s = 0;  // the whole document's prefill
  double state_mb = 0, peak_rss_mb = 0;
  std::string error;
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

// -log softmax(logits)[target], in double.
double token_nll(const float* logits, int64_t n_vocab, TokenId target) {
  const float mx = *std::max_element(logits, logits + n_vocab);
  double sum = 0;
  for (int64_t v = 0; v < n_vocab; ++v) sum += std::exp(double(logits[v] - mx));
  return std::log(sum) - double(logits[target] - mx);
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Up to `n` greedy tokens after `logits`, stopping at an end-of-generation token.
std::string greedy_answer(LlamaContext& c, const Tokenizer& tok, std::span<const float> logits, int n) {
  SamplingParams greedy;
  greedy.temperature = 0;
  Sampler sampler(greedy, int(logits.size()));
  Utf8Stream utf8;
  std::string answer;
  std::vector<float> last(logits.begin(), logits.end());
  for (int i = 0; i < n; ++i) {
    const TokenId next = sampler.sample(last);
    if (tok.is_eog(next)) break;
    answer += utf8.push(tok.token_to_piece(next));
    auto l = c.eval(std::span<const TokenId>(&next, 1));
    if (!l.ok()) break;
    last.assign(l->begin(), l->end());
  }
  return answer + utf8.flush();
}

// Runs one evaluation in this process (the forked child).
Result run_one(const Inputs& in, const EvalArgs& a, const Run& run) {
  const LlamaModel& model = in.model;
  const Tokenizer& tok = in.tok;
  const std::vector<TokenId>& prose = in.prose;
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
  opt.kv.n_ctx = int(run.length + (run.task == "coverage" ? a.summary_tokens : a.answer_tokens) +
                     (run.task.starts_with("docqa") ? 64 : 8));
  opt.kv.gate = gate_for_policy(opt.kv, in.gate);
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
      for (size_t t = 0; t < n; ++t) nll += token_nll(logits->data() + t * size_t(n_vocab), n_vocab, window[b + t + 1]);
    }
    r.ttft_s = seconds_since(t0);  // the whole input, as for the retrieval tasks
    r.prefill_tok_s = double(run.length) / r.ttft_s;
    r.items.push_back({run.depth, std::exp(nll / double(run.length)), ""});
  } else if (run.task == "docqa" || run.task == "docqa-loss") {
    // The document once; then each question on its own, from the state the document left: its
    // greedy answer (docqa), or the loss of the fact's own words after it, teacher-forced
    // (docqa-loss: what the memory tells of the fact even when the answer is not the first guess).
    const DocQa d = docqa_prompt(tok, prose, run.length, in.depths, run.seed);
    if (auto l = c.eval(d.document); !l.ok()) {
      r.error = std::string(l.status().message());
      return r;
    }
    r.ttft_s = seconds_since(t0);
    r.prefill_tok_s = double(d.document.size()) / r.ttft_s;
    r.state_mb = double(c.policy().state_bytes()) / (1 << 20);
    std::string after_document;
    ByteWriter w(&after_document);
    if (Status st = c.policy().save(w); !st.ok()) {
      r.error = std::string(st.message());
      return r;
    }
    for (size_t i = 0; i < d.questions.size(); ++i) {
      if (i > 0) {
        ByteReader back(after_document, "the state after the document");
        if (Status st = c.policy().restore(back); !st.ok()) {
          r.error = std::string(st.message());
          return r;
        }
      }
      auto l = c.eval(d.questions[i].tokens);
      if (!l.ok()) {
        r.error = std::string(l.status().message());
        return r;
      }
      const DocQa::Question& q = d.questions[i];
      if (run.task == "docqa") {
        const std::string answer = greedy_answer(c, tok, *l, a.answer_tokens);
        r.items.push_back({q.depth, docqa_score(q.answer, answer), answer});
        continue;
      }
      double nll = 0;
      std::vector<float> last(l->begin(), l->end());
      for (size_t k = 0; k < q.answer_tokens.size(); ++k) {
        nll += token_nll(last.data(), int64_t(last.size()), q.answer_tokens[k]);
        if (k + 1 == q.answer_tokens.size()) break;
        auto next = c.eval(std::span<const TokenId>(&q.answer_tokens[k], 1));
        if (!next.ok()) {
          r.error = std::string(next.status().message());
          return r;
        }
        last.assign(next->begin(), next->end());
      }
      r.items.push_back({q.depth, nll / double(q.answer_tokens.size()), q.answer});
    }
    return r;
  } else if (run.task == "coverage") {
    // One summary of the whole document, scored section by section.
    auto cov = coverage_prompt(tok, in.paragraphs, run.length, a.sections, run.seed);
    if (!cov.ok()) {
      r.error = std::string(cov.status().message());
      return r;
    }
    auto l = c.eval(cov->tokens);
    if (!l.ok()) {
      r.error = std::string(l.status().message());
      return r;
    }
    r.ttft_s = seconds_since(t0);
    r.prefill_tok_s = double(cov->tokens.size()) / r.ttft_s;
    const std::string summary = greedy_answer(c, tok, *l, a.summary_tokens);
    for (const Coverage::Section& sec : cov->sections) {
      r.items.push_back({sec.depth, coverage_score(sec.terms, summary),
                         absl::StrCat("[", absl::StrJoin(sec.terms, ", "), "] ", summary)});
    }
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
    const std::string answer = greedy_answer(c, tok, *logits, a.answer_tokens);
    r.items.push_back({run.depth, retrieval_score(p, answer), answer});
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

bool parse_field(const std::string& s, double* v) { return absl::SimpleAtod(s, v); }
bool parse_field(const std::string& s, size_t* v) { return absl::SimpleAtoi(s, v); }

// Forks, runs, and collects the child's result and its peak RSS.
Result run_forked(const Inputs& in, const EvalArgs& a, const Run& run) {
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
    const Result c = run_one(in, a, run);
    // Numbers, then each string length-prefixed, so any bytes survive the trip.
    std::string msg = absl::StrFormat("%.17g %.17g %.17g %d %d\n", c.ttft_s, c.prefill_tok_s, c.state_mb,
                                      c.items.size(), c.error.size()) +
                      c.error;
    for (const Item& it : c.items) {
      absl::StrAppend(&msg, absl::StrFormat("%.17g %.17g %d\n", it.depth, it.score, it.answer.size()), it.answer);
    }
    (void)!write(fds[1], msg.data(), msg.size());
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
  // The message, read from `at` on: a header is one line of space-separated numbers, exactly as
  // many as fields; a text is the next n bytes. Either is false when the message is cut short.
  size_t at = 0;
  auto header = [&](auto&... fields) {
    const size_t eol = data.find('\n', at);
    if (eol == std::string::npos) return false;
    const std::vector<std::string> parts = absl::StrSplit(data.substr(at, eol - at), ' ');
    at = eol + 1;
    size_t i = 0;
    return parts.size() == sizeof...(fields) && (parse_field(parts[i++], &fields) && ...);
  };
  auto text = [&](size_t n, std::string* out) {
    if (at + n > data.size()) return false;
    *out = data.substr(at, n);
    at += n;
    return true;
  };
  size_t n_items = 0, n_error = 0;
  bool ok =
      WIFEXITED(status) && header(r.ttft_s, r.prefill_tok_s, r.state_mb, n_items, n_error) && text(n_error, &r.error);
  for (size_t i = 0; ok && i < n_items; ++i) {
    Item it;
    size_t n_answer = 0;
    ok = header(it.depth, it.score, n_answer) && text(n_answer, &it.answer);
    r.items.push_back(std::move(it));
  }
  if (!ok || at != data.size()) {
    r.items.clear();
    r.error = "the evaluation process died";
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

// Mean score of one (task, policy, length, depth) over its seeds, with a 95 % interval: Wilson's
// for accuracies (fractions of answers right), Student's t for perplexity.
struct Summary {
  std::string task, policy;
  int64_t length = 0;
  double depth = 0;
  int n = 0;
  double mean = NAN, lo = NAN, hi = NAN;
};

std::vector<Summary> summarise(const std::vector<std::pair<Run, Result>>& rows) {
  std::map<std::tuple<std::string, std::string, int64_t, double>, std::vector<double>> scores;
  std::vector<std::tuple<std::string, std::string, int64_t, double>> order;
  for (const auto& [run, res] : rows) {
    for (const Item& it : res.items) {
      if (std::isnan(it.score)) continue;
      const auto key = std::make_tuple(run.task, run.policy, run.length, it.depth);
      auto [pos, fresh] = scores.try_emplace(key);
      if (fresh) order.push_back(key);
      pos->second.push_back(it.score);
    }
  }
  std::vector<Summary> out;
  for (const auto& key : order) {
    const std::vector<double>& v = scores[key];
    Summary g{std::get<0>(key), std::get<1>(key), std::get<2>(key), std::get<3>(key), int(v.size())};
    double sum = 0;
    for (double x : v) sum += x;
    g.mean = sum / g.n;
    if (g.task == "ppl" || g.task == "docqa-loss") {
      if (g.n > 1) {
        double ss = 0;
        for (double x : v) ss += (x - g.mean) * (x - g.mean);
        // Two-sided 95 % quantiles of Student's t for 1..10 degrees of freedom, then ~normal.
        constexpr double kT[] = {12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228};
        const double t = g.n - 1 <= 10 ? kT[g.n - 2] : 1.96;
        const double half = t * std::sqrt(ss / (g.n - 1) / g.n);
        g.lo = g.mean - half;
        g.hi = g.mean + half;
      }
    } else {
      const double z = 1.96, n = g.n, p = g.mean;
      const double centre = (p + z * z / (2 * n)) / (1 + z * z / n);
      const double half = z / (1 + z * z / n) * std::sqrt(p * (1 - p) / n + z * z / (4 * n * n));
      g.lo = std::max(0.0, centre - half);
      g.hi = std::min(1.0, centre + half);
    }
    out.push_back(g);
  }
  return out;
}

void print_summary(const std::vector<Summary>& summary) {
  std::printf("\nover seeds: mean and 95 %% interval (accuracy: Wilson; perplexity and loss: Student's t)\n");
  std::printf("%-12s %-13s %7s %6s %4s %9s %19s\n", "task", "policy", "length", "depth", "n", "mean", "95% interval");
  for (const Summary& g : summary) {
    std::printf("%-12s %-13s %7lld %6.2f %4d %9.3f  [%7.3f, %7.3f]\n", g.task.c_str(), g.policy.c_str(),
                static_cast<long long>(g.length), g.depth, g.n, g.mean, g.lo, g.hi);
  }
}

std::string json_number(double v) { return std::isfinite(v) ? absl::StrCat(v) : std::string("null"); }

// eval.png -> eval-depth.png
std::string depth_plot_path(const std::string& png) {
  const size_t dot = png.rfind('.');
  const size_t slash = png.rfind('/');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return png + "-depth.png";
  return png.substr(0, dot) + "-depth" + png.substr(dot);
}

// Accuracy against depth: one panel per task swept over depths, one line per policy and length.
Status write_depth_plot(const std::string& png, const std::vector<Summary>& summary) {
  std::vector<std::string> tasks;
  std::map<std::string, std::map<std::pair<std::string, int64_t>, std::vector<std::pair<double, double>>>> lines;
  for (const Summary& g : summary) {
    if (g.task == "ppl" || g.task == "multineedle" || g.task == "docqa-loss") continue;
    if (std::find(tasks.begin(), tasks.end(), g.task) == tasks.end()) tasks.push_back(g.task);
    lines[g.task][{g.policy, g.length}].push_back({g.depth, g.mean});
  }
  bool swept = false;
  for (const auto& [task, by] : lines) {
    for (const auto& [key, pts] : by) swept = swept || pts.size() > 1;
  }
  if (!swept) return absl::OkStatus();  // nothing to draw: a single depth
  const std::string dat = png + ".dat", gp = png + ".gp";
  std::ofstream d(dat);
  std::ofstream g(gp);
  g << "set terminal pngcairo size " << 600 * tasks.size() << ",480 font ',11'\nset output '" << png
    << "'\nset multiplot layout 1," << tasks.size() << "\nset xlabel 'depth of the fact (0 = start)'\n"
    << "set ylabel 'accuracy'\nset yrange [-0.05:1.05]\nset xrange [0:1]\nset key below\nset grid\n";
  int block = 0;
  for (const std::string& task : tasks) {
    std::string cmd = "plot ";
    for (const auto& [key, pts] : lines[task]) {
      std::vector<std::pair<double, double>> sorted = pts;
      std::sort(sorted.begin(), sorted.end());
      for (const auto& [x, y] : sorted) d << x << " " << y << "\n";
      d << "\n\n";
      absl::StrAppend(&cmd, cmd == "plot " ? "" : ", ", "'", dat, "' index ", block++,
                      " using 1:2 with linespoints title '", key.first, " ", key.second, "'");
    }
    g << "set title '" << task << "'\n" << cmd << "\n";
  }
  g << "unset multiplot\n";
  d.close();
  g.close();
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
  p.option("", "--tasks", "LIST",
           "ppl, passkey, needle, multineedle, docqa, coverage (default: these), docqa-loss (docqa's answers "
           "teacher-forced: loss per token by depth)",
           &a.tasks);
  p.option("", "--lengths", "LIST", "input lengths in tokens (default 2048,4096,8192,16384)", &a.lengths);
  p.option("", "--policies", "LIST", "policies (default full,streaming,snapkv,pyramidkv,edgeinfinite)", &a.policies);
  p.option("", "--depths", "LIST", "needle and fact depths in [0, 1] (default 0.1,0.5,0.9)", &a.depths);
  p.option("", "--seeds", "N", "seeds per configuration (default 1)", &a.seeds);
  p.option("", "--sections", "N", "coverage: sections per document (default 8)", &a.sections);
  p.option("", "--summary-tokens", "N", "coverage: tokens of the summary (default 192)", &a.summary_tokens);
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
  p.option("", "--plot", "FILE",
           "PNG of memory and TTFT against length (default eval.png; '' = none), and beside it FILE-depth.png: "
           "accuracy against depth",
           &a.plot);
  p.option("-t", "--threads", "N", "CPU threads (default: all cores)", &a.threads);
  p.option("", "--device", "NAME", kDeviceHelp, &a.device);
  EDGEINF_RETURN_IF_ERROR(p.parse(argc, argv, 2));
  if (a.threads <= 0) a.threads = int(std::max(1u, std::thread::hardware_concurrency()));
  EDGEINF_ASSIGN_OR_RETURN(std::vector<std::string> tasks, parse_list<std::string>("--tasks", a.tasks));
  for (const std::string& task : tasks) {
    if (std::find(std::begin(kTasks), std::end(kTasks), task) == std::end(kTasks)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--tasks: unknown task '", task, "' (", absl::StrJoin(kTasks, ", "), ")"));
    }
  }
  EDGEINF_ASSIGN_OR_RETURN(std::vector<int64_t> lengths, parse_list<int64_t>("--lengths", a.lengths));
  EDGEINF_ASSIGN_OR_RETURN(std::vector<std::string> policies, parse_list<std::string>("--policies", a.policies));
  for (const std::string& pol : policies) {
    if (Status st = known_kv_policy(pol); !st.ok())
      return Status(st.code(), absl::StrCat("--policies: ", st.message()));
  }
  EDGEINF_ASSIGN_OR_RETURN(std::vector<double> depths, parse_list<double>("--depths", a.depths));
  if (a.sections < 1 || a.summary_tokens < 1) {
    return absl::InvalidArgumentError("--sections and --summary-tokens must be at least 1");
  }
  for (double d : depths) {
    if (!(d >= 0 && d <= 1)) return absl::InvalidArgumentError(absl::StrCat("--depths: ", d, " is not in [0, 1]"));
  }
  const bool docqa = std::find(tasks.begin(), tasks.end(), "docqa") != tasks.end() ||
                     std::find(tasks.begin(), tasks.end(), "docqa-loss") != tasks.end();
  if (docqa && depths.size() > kDocQaMaxFacts) {
    return absl::InvalidArgumentError(
        absl::StrCat("--depths: docqa states one distinct fact per depth, at most ", kDocQaMaxFacts));
  }

  EDGEINF_ASSIGN_OR_RETURN(std::unique_ptr<LlamaModel> model, LlamaModel::load(a.model));
  EDGEINF_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tok, Tokenizer::from_gguf(model->gguf()));
  std::ifstream in(a.text, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read '", a.text, "' (scripts/eval-data writes it)"));
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  const std::vector<TokenId> prose = tok->encode(text, false, false);
  std::unique_ptr<MemoryGate> gate;
  EDGEINF_ASSIGN_OR_RETURN(gate,
                           load_default_gate(a.model, a.gate, AttentionShape::of(*model), model->gguf().fingerprint()));
  EDGEINF_ASSIGN_OR_RETURN(const std::string shape_warning, resolve_kv_shape(shape, gate.get(), &a.kv));
  if (!shape_warning.empty()) std::fprintf(stderr, "warning: %s\n", shape_warning.c_str());
  a.kv.budget = a.kv.sink + a.kv.window;  // equal exact-KV budget for every bounded policy
  std::string gate_name = gate ? absl::StrCat(gate->describe(), " (trained)") : "none (memory unused)";
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
      // One docqa run asks about every depth, one coverage run scores every section; ppl and
      // multineedle have none.
      const std::vector<double> task_depths = task == "passkey" || task == "needle" ? depths : std::vector<double>{0.0};
      for (double depth : task_depths) {
        for (int seed = 1; seed <= a.seeds; ++seed) {
          for (const std::string& pol : policies) runs.push_back({task, pol, len, depth, uint64_t(seed)});
        }
      }
    }
  }
  // coverage draws its sections from whole paragraphs (blank-line separated) of the prose.
  std::vector<std::vector<TokenId>> paragraphs;
  if (std::find(tasks.begin(), tasks.end(), "coverage") != tasks.end()) paragraphs = encode_paragraphs(*tok, text);
  const Inputs inputs{*model, *tok, prose, paragraphs, depths, gate.get()};
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
      res = run_forked(inputs, a, run);
    }
    if (grows && beyond) note = "beyond the model's native window";
    if (!res.error.empty()) note = res.error;
    if (res.items.empty()) res.items.push_back({run.depth, NAN, ""});  // a failed run still has its row
    for (const Item& it : res.items) {
      std::printf("%-12s %-13s %7lld %6.2f %9.3f %8.2f %10.1f %9.1f %9.1f  %s\n", run.task.c_str(), run.policy.c_str(),
                  static_cast<long long>(run.length), it.depth, it.score, res.ttft_s, res.prefill_tok_s, res.state_mb,
                  res.peak_rss_mb, note.c_str());
    }
    std::fflush(stdout);
    rows.push_back({run, res});
  }
  const std::vector<Summary> summary = summarise(rows);
  if (a.seeds > 1) print_summary(summary);

  if (!a.json.empty()) {
    std::ofstream j(a.json);
    j << "{\"model\":\"" << json_escape(a.model) << "\",\"text\":\"" << json_escape(a.text)
      << "\",\"sink\":" << a.kv.sink << ",\"window\":" << a.kv.window << ",\"segment\":" << a.kv.segment
      << ",\"budget\":" << a.kv.budget << ",\"kv_type\":\"" << kv_type_name(a.kv.kv_type) << "\",\"gate\":\""
      << json_escape(gate_name) << "\",\"update\":\"" << memory_update_name(a.kv.update) << "\",\"runs\":[";
    const char* sep = "";
    for (const auto& [run, res] : rows) {
      for (const Item& it : res.items) {
        j << sep << "{\"task\":\"" << run.task << "\",\"policy\":\"" << run.policy << "\",\"length\":" << run.length
          << ",\"depth\":" << it.depth << ",\"seed\":" << run.seed << ",\"score\":" << json_number(it.score)
          << ",\"ttft_s\":" << res.ttft_s << ",\"prefill_tok_s\":" << res.prefill_tok_s
          << ",\"state_mb\":" << res.state_mb << ",\"peak_rss_mb\":" << res.peak_rss_mb
          << ",\"beyond_native_window\":" << (run.length > model->config().n_ctx_train ? "true" : "false")
          << ",\"answer\":\"" << json_escape(it.answer) << "\",\"error\":\"" << json_escape(res.error) << "\"}";
        sep = ",";
      }
    }
    j << "],\"summary\":[";
    sep = "";
    for (const Summary& g : summary) {
      j << sep << "{\"task\":\"" << g.task << "\",\"policy\":\"" << g.policy << "\",\"length\":" << g.length
        << ",\"depth\":" << g.depth << ",\"n\":" << g.n << ",\"mean\":" << json_number(g.mean) << ",\"ci95\":["
        << json_number(g.lo) << "," << json_number(g.hi) << "]}";
      sep = ",";
    }
    j << "]}\n";
  }
  if (!a.plot.empty()) {
    const Status s = write_plot(a.plot, rows);
    if (!s.ok()) std::fprintf(stderr, "warning: %s\n", std::string(s.message()).c_str());
    const Status d = write_depth_plot(depth_plot_path(a.plot), summary);
    if (!d.ok()) std::fprintf(stderr, "warning: %s\n", std::string(d.message()).c_str());
  }
  return absl::OkStatus();
}

}  // namespace

int run_eval(int argc, char** argv) { return exit_code("eval", run(argc, argv)); }

}  // namespace edgeinf::cli
