// The gate's next-token loss through the whole tiny model: the training pass's forward gives the
// loss the inference engine's logits give (edgeinfinite, the same gate), and its gradient with
// respect to every gate parameter matches central finite differences of that loss, for the scalar
// and the linear gate, with the state before the batch held fixed (the truncation it implements).
// Training on it (train_gate_lm) lowers the loss it follows, is deterministic for a seed, and a run
// resumed from its checkpoint ends where an uninterrupted one does; another run's checkpoint and a
// damaged one are refused. On instruction samples (train_gate_sft) the loss is the engine's loss
// on the answer alone, read after the document and the question as a session reads them, and
// training lowers it.
#include "engine/calibration/lm_gate_training.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "engine/backend/backend.h"
#include "tests/golden/bin_gate.h"
#include "tests/golden/tiny_model.h"
#include "tests/test_paths.h"
#include "tests/tolerances.h"

namespace edgeinf {
namespace {

using testing::tiny_model;

GateConfig small_config(GateKind kind) {
  GateConfig c;
  c.kind = kind;
  c.sink = 2;
  c.window = 16;
  c.segment = 8;  // memory read from token 27 on
  c.kv_type = KvType::kF32;
  return c;
}

// A gate with every head open to some degree, and small random weights for the linear kind; with
// `projected`, a query projection near the identity.
std::unique_ptr<MemoryGate> open_gate(const LlamaModel& m, GateKind kind, uint64_t seed, bool projected = false) {
  auto gate = std::make_unique<MemoryGate>(small_config(kind), AttentionShape::of(m), 0.0f);
  if (projected) gate->add_query_projection();
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (int il = 0; il < gate->n_layer(); ++il) {
    for (float& b : gate->bias(il)) b = u(rng);
    for (float& w : gate->weight(il)) w = 0.2f * u(rng);
    for (float& q : gate->query(il)) q += 0.3f * u(rng);
  }
  return gate;
}

std::vector<int32_t> next_tokens(const std::vector<TokenId>& seq, int64_t first, int64_t n) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) t[size_t(i)] = seq[size_t(first + i + 1)];
  return t;
}

// The inference engine under edgeinfinite at small_config's shape, batches of L, with `gate`.
LlamaContextOptions engine_options(const MemoryGate& gate) {
  LlamaContextOptions opt;
  opt.kv.name = "edgeinfinite";
  opt.kv.sink = 2;
  opt.kv.window = 16;
  opt.kv.segment = 8;
  opt.kv.kv_type = KvType::kF32;
  opt.kv.gate = &gate;
  opt.n_batch = 8;
  return opt;
}

// -log softmax(logits)[target], in double.
double token_nll(const float* logits, int64_t n_vocab, int32_t target) {
  const float mx = *std::max_element(logits, logits + n_vocab);
  double sum = 0;
  for (int64_t i = 0; i < n_vocab; ++i) sum += std::exp(double(logits[i] - mx));
  return std::log(sum) - double(logits[target] - mx);
}

void check_forward_loss(bool projected) {
  const LlamaModel& m = tiny_model();
  kernels::cpu::ThreadPool pool(2);
  const auto gate = open_gate(m, GateKind::kLinear, 1, projected);
  const std::vector<TokenId> seq = testing::random_tokens(57, m.config().n_vocab, 11);
  auto pass = GateLmPass::create(m, *gate, pool);
  ASSERT_TRUE(pass.ok()) << pass.status();

  const std::unique_ptr<ModelBackend> cpu = make_cpu_backend(m, pool);
  auto ctx = LlamaContext::create(*cpu, engine_options(*gate));
  ASSERT_TRUE(ctx.ok()) << ctx.status();

  const int64_t n_vocab = m.config().n_vocab;
  int batches_with_memory = 0;
  for (int64_t b = 0; b + 1 < int64_t(seq.size()); b += 8) {
    const int64_t n = std::min<int64_t>(8, int64_t(seq.size()) - 1 - b);
    const std::span<const TokenId> toks(seq.data() + b, size_t(n));
    const std::vector<int32_t> targets = next_tokens(seq, b, n);
    auto got = (*pass)->run(toks, targets, *gate, nullptr);
    ASSERT_TRUE(got.ok()) << got.status();
    auto logits = (*ctx)->eval_all_logits(toks);
    ASSERT_TRUE(logits.ok()) << logits.status();
    double want = 0;
    for (int64_t t = 0; t < n; ++t) want += token_nll(logits->data() + t * n_vocab, n_vocab, targets[size_t(t)]);
    EXPECT_EQ(got->n_scored, n);
    EXPECT_NEAR(got->nll, want, 1e-4 * want) << "batch at " << b;
    EXPECT_EQ(got->read_memory, b >= 24) << "batch at " << b;  // more than S + W + L = 26 tokens seen
    batches_with_memory += got->read_memory ? 1 : 0;
  }
  EXPECT_GE(batches_with_memory, 3);
}

TEST(GateLmPass, ForwardLossIsTheEnginesLoss) { check_forward_loss(false); }
TEST(GateLmPass, ForwardLossIsTheEnginesLossWithQueryProjection) { check_forward_loss(true); }

// Loss of the batch at `first` from the saved state before it, and its gradient.
double batch_loss(GateLmPass& pass, const std::string& state, const std::vector<TokenId>& seq, int64_t first,
                  const MemoryGate& gate, GateGradient* grad) {
  EXPECT_TRUE(pass.restore(state).ok());
  const std::vector<int32_t> targets = next_tokens(seq, first, 8);
  auto r = pass.run(std::span<const TokenId>(seq.data() + first, 8), targets, gate, grad);
  EXPECT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->read_memory);
  return r->nll;
}

void check_gradient(GateKind kind, bool projected = false) {
  const LlamaModel& m = tiny_model();
  kernels::cpu::ThreadPool pool(2);
  const auto gate = open_gate(m, kind, 2, projected);
  const std::vector<TokenId> seq = testing::random_tokens(49, m.config().n_vocab, 12);
  auto made = GateLmPass::create(m, *gate, pool);
  ASSERT_TRUE(made.ok()) << made.status();
  GateLmPass& pass = **made;
  for (int64_t b = 0; b < 40; b += 8) {
    ASSERT_TRUE(pass.run(std::span<const TokenId>(seq.data() + b, 8), {}, *gate, nullptr).ok());
  }
  std::string state;
  ASSERT_TRUE(pass.save(&state).ok());

  GateGradient grad(*gate);
  batch_loss(pass, state, seq, 40, *gate, &grad);
  double norm = 0;
  for (const auto& b : grad.bias) {
    for (float g : b) norm += double(g) * g;
  }
  ASSERT_GT(norm, 1e-8) << "the gate has no effect on the loss";

  // Each layer's bias one at a time, then a random direction through every parameter.
  // Large enough that the float32 loss's rounding (about 1e-7 of ~450, over 2h) stays below the
  // tolerance, small enough that the curvature does too.
  const float h = 3e-2f;
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  // Central difference of the loss between two gates a step apart on either side.
  auto central = [&](const MemoryGate& plus, const MemoryGate& minus, float step) {
    return (batch_loss(pass, state, seq, 40, plus, nullptr) - batch_loss(pass, state, seq, 40, minus, nullptr)) /
           (2.0 * step);
  };
  // Moves one array of parameters by step * a random direction in plus and minus; returns the
  // analytic derivative along it.
  auto along_random = [&](std::vector<float>& plus, std::vector<float>& minus, const std::vector<float>& g,
                          float step) {
    double along = 0;
    for (size_t j = 0; j < plus.size(); ++j) {
      const float d = u(rng);
      plus[j] += step * d, minus[j] -= step * d;
      along += double(d) * g[j];
    }
    return along;
  };
  for (int il = 0; il < gate->n_layer(); ++il) {
    for (size_t j = 0; j < gate->bias(il).size(); ++j) {
      MemoryGate plus = *gate, minus = *gate;
      plus.bias(il)[j] += h;
      minus.bias(il)[j] -= h;
      const double fd = central(plus, minus, h);
      EXPECT_NEAR(grad.bias[size_t(il)][j], fd, 2e-2 * std::abs(fd) + 1e-4) << "layer " << il << " head " << j;
    }
  }
  MemoryGate plus = *gate, minus = *gate;
  double along = 0;
  for (int il = 0; il < gate->n_layer(); ++il) {
    along += along_random(plus.bias(il), minus.bias(il), grad.bias[size_t(il)], h);
    along += along_random(plus.weight(il), minus.weight(il), grad.weight[size_t(il)], h);
    along += along_random(plus.query(il), minus.query(il), grad.query[size_t(il)], h);
  }
  const double fd = central(plus, minus, h);
  EXPECT_NEAR(along, fd, 2e-2 * std::abs(fd) + 1e-4);
  if (!projected) return;

  // The projection alone: the largest entries of each layer's gradient, one at a time, and a random
  // direction through the projections only (a shorter step: the direction has many entries).
  const float hq = 1e-2f;
  double qnorm = 0;
  for (const auto& q : grad.query) {
    for (float g : q) qnorm += double(g) * g;
  }
  ASSERT_GT(qnorm, 1e-10) << "the projection has no effect on the loss";
  for (int il = 0; il < gate->n_layer(); ++il) {
    const std::vector<float>& g = grad.query[size_t(il)];
    const size_t j = size_t(
        std::max_element(g.begin(), g.end(), [](float a, float b) { return std::abs(a) < std::abs(b); }) - g.begin());
    MemoryGate qp = *gate, qm = *gate;
    qp.query(il)[j] += hq;
    qm.query(il)[j] -= hq;
    const double fdj = central(qp, qm, hq);
    EXPECT_NEAR(g[j], fdj, 2e-2 * std::abs(fdj) + 1e-4) << "layer " << il << " entry " << j;
  }
  MemoryGate qp = *gate, qm = *gate;
  double qalong = 0;
  for (int il = 0; il < gate->n_layer(); ++il)
    qalong += along_random(qp.query(il), qm.query(il), grad.query[size_t(il)], hq);
  const double qfd = central(qp, qm, hq);
  EXPECT_NEAR(qalong, qfd, 2e-2 * std::abs(qfd) + 1e-5);
}

TEST(GateLmPass, ScalarGateGradientMatchesFiniteDifferences) { check_gradient(GateKind::kScalar); }
TEST(GateLmPass, LinearGateGradientMatchesFiniteDifferences) { check_gradient(GateKind::kLinear); }
TEST(GateLmPass, QueryProjectionGradientMatchesFiniteDifferences) { check_gradient(GateKind::kScalar, true); }
TEST(GateLmPass, QueryProjectionWithLinearGateGradientMatchesFiniteDifferences) {
  check_gradient(GateKind::kLinear, true);
}

// The gradient against the independent float64 reference (make_golden.tiny_gate_gradients):
// central differences of its loss with the state before the batch held fixed.
void check_against_reference(const std::string& file) {
  const std::string dir = testing::golden_dir();
  std::ifstream in(dir + "/" + file);
  ASSERT_TRUE(in) << "cannot read " << dir << "/" << file << " (the golden_reference test writes it)";
  std::string line, model_file, gate_file, update;
  int sink = 0, window = 0, segment = 0;
  int64_t first = 0, n = 0;
  double want_loss = 0;
  std::vector<TokenId> tokens;
  struct Derivative {
    std::string what;  // bias, weight or query
    int layer;
    int64_t index;
    double value;
  };
  std::vector<Derivative> want;
  while (std::getline(in, line)) {
    std::istringstream ss(line);
    std::string key;
    ss >> key;
    if (key == "model") ss >> model_file;
    if (key == "gate") ss >> gate_file;
    if (key == "shape") ss >> sink >> window >> segment >> update;
    if (key == "batch") ss >> first >> n;
    if (key == "loss") ss >> want_loss;
    if (key == "tokens") {
      size_t count = 0;
      ss >> count;
      tokens.resize(count);
      for (TokenId& t : tokens) ss >> t;
    }
    if (key == "bias" || key == "weight" || key == "query") {
      Derivative d{key, 0, 0, 0};
      ss >> d.layer >> d.index >> d.value;  // index: the head of a bias, the entry of a matrix
      want.push_back(d);
    }
    ASSERT_FALSE(ss.fail()) << file << ": cannot parse '" << line << "'";
  }
  ASSERT_EQ(update, "delta");
  ASSERT_GT(want.size(), 10u);
  const bool projected = file.find("_query") != std::string::npos;
  ASSERT_EQ(std::count_if(want.begin(), want.end(), [](const Derivative& d) { return d.what == "query"; }) > 0,
            projected);
  ASSERT_EQ(int64_t(tokens.size()), first + n + 1);

  auto model = LlamaModel::load(dir + "/" + model_file);
  ASSERT_TRUE(model.ok()) << model.status();
  const AttentionShape shape = AttentionShape::of(**model);
  GateConfig base;
  base.sink = sink;
  base.window = window;
  base.segment = segment;
  base.update = MemoryUpdate::kDelta;
  base.kv_type = KvType::kF32;
  const std::unique_ptr<MemoryGate> gate = testing::read_bin_gate(dir + "/" + gate_file, shape, base);
  ASSERT_NE(gate, nullptr) << "cannot read " << gate_file;
  kernels::cpu::ThreadPool pool(2);
  auto pass = GateLmPass::create(**model, *gate, pool);
  ASSERT_TRUE(pass.ok()) << pass.status();
  for (int64_t b = 0; b < first; b += segment) {
    ASSERT_TRUE((*pass)->run(std::span<const TokenId>(tokens.data() + b, size_t(segment)), {}, *gate, nullptr).ok());
  }
  GateGradient grad(*gate);
  const std::vector<int32_t> targets = next_tokens(tokens, first, n);
  auto r = (*pass)->run(std::span<const TokenId>(tokens.data() + first, size_t(n)), targets, *gate, &grad);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(r->read_memory);
  const testing::Tolerance lt = testing::kGateLossVsReferenceTol, gt = testing::kGateGradientVsReferenceTol;
  EXPECT_NEAR(r->nll, want_loss, lt.abs + lt.rel * std::abs(want_loss));
  double worst = 0, scale = 0;
  for (const Derivative& d : want) scale = std::max(scale, std::abs(d.value));
  for (const Derivative& d : want) {
    const auto& of = d.what == "bias" ? grad.bias : d.what == "weight" ? grad.weight : grad.query;
    ASSERT_LT(size_t(d.index), of[size_t(d.layer)].size()) << d.what << " layer " << d.layer;
    const float got = of[size_t(d.layer)][size_t(d.index)];
    // Relative to the largest derivative of the file: a small one is the difference of large terms.
    EXPECT_NEAR(got, d.value, gt.abs + gt.rel * scale) << d.what << " layer " << d.layer << " index " << d.index;
    worst = std::max(worst, std::abs(got - d.value) / scale);
  }
  std::printf("%s: loss %.9g vs %.9g; %zu derivatives, worst error %.3g of the largest (%.4g)\n", file.c_str(), r->nll,
              want_loss, want.size(), worst, scale);
}

TEST(GateLmPass, GradientMatchesThePythonReferenceGqa) { check_against_reference("gate_grad_tiny_gqa_odd.txt"); }
TEST(GateLmPass, GradientMatchesThePythonReferenceNeoxBias) { check_against_reference("gate_grad_tiny_qkv_bias.txt"); }
TEST(GateLmPass, GradientMatchesThePythonReferenceWithQueryProjection) {
  check_against_reference("gate_grad_tiny_gqa_odd_query.txt");
}

TEST(GateLmPass, RefusesBadBatches) {
  const LlamaModel& m = tiny_model();
  kernels::cpu::ThreadPool pool(1);
  const auto gate = open_gate(m, GateKind::kScalar, 4);
  auto pass = GateLmPass::create(m, *gate, pool);
  ASSERT_TRUE(pass.ok()) << pass.status();
  const std::vector<TokenId> nine(9, 1), two = {1, m.config().n_vocab};
  EXPECT_EQ((*pass)->run(nine, {}, *gate, nullptr).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*pass)->run(two, {}, *gate, nullptr).status().code(), absl::StatusCode::kInvalidArgument);
  const std::vector<int32_t> one_target = {1};
  EXPECT_EQ(
      (*pass)
          ->run(std::span<const TokenId>(two.data(), 1), std::span<const int32_t>(one_target.data(), 1), *gate, nullptr)
          .status()
          .code(),
      absl::StatusCode::kOk);
  EXPECT_EQ(
      (*pass)->run(std::span<const TokenId>(two.data(), 1), std::vector<int32_t>{1, 2}, *gate, nullptr).status().code(),
      absl::StatusCode::kInvalidArgument);
}

// Training runs on the tiny model: sequences of 48 tokens (the memory is read from token 27 on).
LmTrainOptions small_run(int steps) {
  LmTrainOptions o;
  o.context = 48;
  o.sequences = 3;
  o.validation_sequences = 1;
  o.steps = steps;
  o.eval_every = 2;
  o.lr = 0.1f;
  o.seed = 5;
  return o;
}

struct Trained {
  std::unique_ptr<MemoryGate> gate;
  LmTrainReport report;
  std::vector<double> train_loss;  // per step
};

Trained train(const MemoryGate& init, const std::vector<TokenId>& text, const LmTrainOptions& o, Status* status) {
  const LlamaModel& m = tiny_model();
  kernels::cpu::ThreadPool pool(2);
  Trained t;
  auto got = train_gate_lm(
      m, text, init, o, pool, [&](int, int, double train, double, double) { t.train_loss.push_back(train); },
      &t.report);
  *status = got.status();
  if (got.ok()) t.gate = std::move(*got);
  return t;
}

void expect_same_parameters(const MemoryGate& a, const MemoryGate& b) {
  ASSERT_EQ(a.n_layer(), b.n_layer());
  for (int il = 0; il < a.n_layer(); ++il) {
    EXPECT_EQ(a.bias(il), b.bias(il)) << "layer " << il;
    EXPECT_EQ(a.weight(il), b.weight(il)) << "layer " << il;
    EXPECT_EQ(a.query(il), b.query(il)) << "layer " << il;
  }
}

std::string temp_path(const char* name) {
  return (std::filesystem::temp_directory_path() / absl::StrCat("edgeinf-", name, "-", ::getpid())).string();
}

TEST(TrainGateLm, LowersTheLossItFollowsAndIsDeterministic) {
  const LlamaModel& m = tiny_model();
  const auto init = open_gate(m, GateKind::kLinear, 6);
  const std::vector<TokenId> text = testing::random_tokens(160, m.config().n_vocab, 13);
  // Two training sequences, cycled: steps 1 and 5 (and 2 and 6) are the same sequence.
  const LmTrainOptions o = small_run(6);
  Status st;
  const Trained a = train(*init, text, o, &st);
  ASSERT_TRUE(st.ok()) << st;
  ASSERT_EQ(a.train_loss.size(), 6u);
  EXPECT_LT(a.train_loss[4], a.train_loss[0]);
  EXPECT_LT(a.train_loss[5], a.train_loss[1]);
  EXPECT_LE(a.report.best_val_nll, a.report.init_val_nll);
  EXPECT_NE(a.report.closed_val_nll, a.report.init_val_nll);
  // The returned gate is the best validated one: the start when nothing beat it, else a trained one.
  bool changed = false;
  for (int il = 0; il < init->n_layer(); ++il) changed |= a.gate->bias(il) != init->bias(il);
  EXPECT_EQ(changed, a.report.best_step > 0);

  const Trained b = train(*init, text, o, &st);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(a.train_loss, b.train_loss);
  EXPECT_EQ(a.report.best_val_nll, b.report.best_val_nll);
  expect_same_parameters(*a.gate, *b.gate);

  LmTrainOptions other = o;
  other.seed = 6;
  const Trained c = train(*init, text, other, &st);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_NE(a.train_loss, c.train_loss) << "the seed does not choose the sequences";
}

TEST(TrainGateLm, ResumesFromItsCheckpointWhereAnUninterruptedRunEnds) {
  const LlamaModel& m = tiny_model();
  const auto init = open_gate(m, GateKind::kScalar, 7);
  const std::vector<TokenId> text = testing::random_tokens(160, m.config().n_vocab, 14);
  Status st;
  const Trained whole = train(*init, text, small_run(4), &st);
  ASSERT_TRUE(st.ok()) << st;

  LmTrainOptions o = small_run(2);
  o.checkpoint = temp_path("lm-checkpoint");
  std::filesystem::remove(o.checkpoint);
  const Trained first = train(*init, text, o, &st);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(first.report.resumed_at, 0);
  ASSERT_TRUE(std::filesystem::exists(o.checkpoint));
  o.steps = 4;
  const Trained rest = train(*init, text, o, &st);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(rest.report.resumed_at, 2);
  ASSERT_EQ(rest.train_loss.size(), 2u);
  EXPECT_EQ(rest.train_loss[0], whole.train_loss[2]);
  EXPECT_EQ(rest.train_loss[1], whole.train_loss[3]);
  EXPECT_EQ(rest.report.best_val_nll, whole.report.best_val_nll);
  EXPECT_EQ(rest.report.init_val_nll, whole.report.init_val_nll);
  expect_same_parameters(*rest.gate, *whole.gate);

  // Another run's checkpoint is refused, and so is a damaged one; neither is overwritten.
  LmTrainOptions other = o;
  other.seed = 9;
  train(*init, text, other, &st);
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_NE(st.message().find("another run"), std::string::npos) << st;
  const auto size = std::filesystem::file_size(o.checkpoint);
  std::filesystem::resize_file(o.checkpoint, size - 5);
  train(*init, text, o, &st);
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss) << st;
  EXPECT_EQ(std::filesystem::file_size(o.checkpoint), size - 5);
  std::filesystem::remove(o.checkpoint);
}

TEST(TrainGateLm, TrainsTheQueryProjectionAndResumesIt) {
  const LlamaModel& m = tiny_model();
  const auto init = open_gate(m, GateKind::kScalar, 10, true);
  const std::vector<TokenId> text = testing::random_tokens(160, m.config().n_vocab, 16);
  LmTrainOptions o = small_run(6);
  o.query_lr = 0.05f;
  Status st;
  const Trained whole = train(*init, text, o, &st);
  ASSERT_TRUE(st.ok()) << st;
  ASSERT_EQ(whole.train_loss.size(), 6u);
  EXPECT_LT(whole.train_loss[4], whole.train_loss[0]);
  ASSERT_GT(whole.report.best_step, 0) << "no step beat the starting gate";
  ASSERT_TRUE(whole.gate->has_query_projection());
  bool moved = false;
  for (int il = 0; il < init->n_layer(); ++il) moved |= whole.gate->query(il) != init->query(il);
  EXPECT_TRUE(moved) << "the projection was not trained";

  // The projection's learning rate is part of the run; its state resumes with the rest.
  LmTrainOptions part = o;
  part.steps = 3;
  part.checkpoint = temp_path("lm-query-checkpoint");
  std::filesystem::remove(part.checkpoint);
  train(*init, text, part, &st);
  ASSERT_TRUE(st.ok()) << st;
  LmTrainOptions other = part;
  other.query_lr = 0.01f;
  other.steps = 6;
  train(*init, text, other, &st);
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  part.steps = 6;
  const Trained rest = train(*init, text, part, &st);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(rest.report.resumed_at, 3);
  expect_same_parameters(*rest.gate, *whole.gate);
  std::filesystem::remove(part.checkpoint);
}

TEST(TrainGateLm, RefusesRunsItCannotDo) {
  const LlamaModel& m = tiny_model();
  const auto init = open_gate(m, GateKind::kScalar, 8);
  const std::vector<TokenId> text = testing::random_tokens(160, m.config().n_vocab, 15);
  Status st;
  LmTrainOptions o = small_run(1);
  o.context = 26;  // never past S + W + L: the memory is never read
  train(*init, text, o, &st);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  o = small_run(1);
  o.sequences = 4;  // 4 x 48 > 160 tokens
  train(*init, text, o, &st);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_NE(st.message().find("160 tokens"), std::string::npos) << st;
  o = small_run(1);
  o.validation_sequences = 3;
  train(*init, text, o, &st);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
}

// Instruction samples on the tiny model: a document of 45 tokens (the memory is read from token 27
// on), then a question of 4 tokens and an answer of 3.
std::vector<GateTrainingSample> tiny_samples(int count, uint64_t seed) {
  std::vector<GateTrainingSample> out;
  for (int i = 0; i < count; ++i) {
    GateTrainingSample s;
    s.tokens = testing::random_tokens(52, tiny_model().config().n_vocab, seed + uint64_t(i));
    s.document_end = 45;
    s.score_from = 49;
    out.push_back(std::move(s));
  }
  return out;
}

LmTrainReport train_sft(const MemoryGate& init, const std::vector<GateTrainingSample>& samples, const LmTrainOptions& o,
                        std::vector<double>* train_loss, Status* status) {
  kernels::cpu::ThreadPool pool(2);
  LmTrainReport report;
  auto got = train_gate_sft(
      tiny_model(), samples, init, o, pool,
      [&](int, int, double train, double, double) { train_loss->push_back(train); }, &report);
  *status = got.status();
  return report;
}

TEST(TrainGateSft, ScoresTheAnswerAfterTheDocumentAndTheQuestionAsTheEngineDoes) {
  const LlamaModel& m = tiny_model();
  const auto gate = open_gate(m, GateKind::kLinear, 21);
  const std::vector<GateTrainingSample> samples = tiny_samples(2, 31);
  LmTrainOptions o = small_run(0);
  std::vector<double> losses;
  Status st;
  const LmTrainReport rep = train_sft(*gate, samples, o, &losses, &st);
  ASSERT_TRUE(st.ok()) << st;

  // The engine reads the held-out sample's document in batches of L = 8, then the question and
  // answer as one batch; the loss is the mean over the answer's 3 tokens.
  kernels::cpu::ThreadPool pool(2);
  const std::unique_ptr<ModelBackend> cpu = make_cpu_backend(m, pool);
  auto ctx = LlamaContext::create(*cpu, engine_options(*gate));
  ASSERT_TRUE(ctx.ok()) << ctx.status();
  const GateTrainingSample& s = samples.back();
  for (int64_t b = 0; b < s.document_end; b += 8) {
    const int64_t n = std::min<int64_t>(8, s.document_end - b);
    ASSERT_TRUE((*ctx)->eval_all_logits(std::span<const TokenId>(s.tokens.data() + b, size_t(n))).ok());
  }
  const int64_t n_rest = int64_t(s.tokens.size()) - s.document_end;
  auto logits = (*ctx)->eval_all_logits(std::span<const TokenId>(s.tokens.data() + s.document_end, size_t(n_rest)));
  ASSERT_TRUE(logits.ok()) << logits.status();
  const int64_t n_vocab = m.config().n_vocab;
  double want = 0;
  for (int64_t p = s.score_from - 1; p + 1 < int64_t(s.tokens.size()); ++p) {
    want += token_nll(logits->data() + (p - s.document_end) * n_vocab, n_vocab, s.tokens[size_t(p + 1)]);
  }
  want /= 3;
  EXPECT_NEAR(rep.init_val_nll, want, 1e-4 * want);

  // Another answer to the same document and question changes the loss; another question with the
  // same answer does too (it is read, not scored).
  std::vector<GateTrainingSample> other = samples;
  other.back().tokens.back() = (other.back().tokens.back() + 1) % TokenId(n_vocab);
  EXPECT_NE(train_sft(*gate, other, o, &losses, &st).init_val_nll, rep.init_val_nll);
  other = samples;
  other.back().tokens[size_t(s.document_end)] = (other.back().tokens[size_t(s.document_end)] + 1) % TokenId(n_vocab);
  EXPECT_NE(train_sft(*gate, other, o, &losses, &st).init_val_nll, rep.init_val_nll);
}

TEST(TrainGateSft, LowersTheAnswerLossAndIsDeterministic) {
  const auto init = open_gate(tiny_model(), GateKind::kScalar, 22);
  const std::vector<GateTrainingSample> samples = tiny_samples(3, 41);
  const LmTrainOptions o = small_run(6);
  std::vector<double> a, b;
  Status st;
  const LmTrainReport ra = train_sft(*init, samples, o, &a, &st);
  ASSERT_TRUE(st.ok()) << st;
  ASSERT_EQ(a.size(), 6u);
  EXPECT_LT(a[4], a[0]);
  EXPECT_LT(a[5], a[1]);
  EXPECT_LE(ra.best_val_nll, ra.init_val_nll);
  const LmTrainReport rb = train_sft(*init, samples, o, &b, &st);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(a, b);
  EXPECT_EQ(ra.best_val_nll, rb.best_val_nll);
}

TEST(TrainGateSft, RefusesSamplesItCannotTrainOn) {
  const auto init = open_gate(tiny_model(), GateKind::kScalar, 23);
  const LmTrainOptions o = small_run(1);
  std::vector<double> losses;
  Status st;
  std::vector<GateTrainingSample> bad = tiny_samples(2, 51);
  bad[1].score_from = 20;  // scored before the memory is read, and inside the document
  bad[1].document_end = 30;
  bad[1].tokens.resize(30 + 4);
  train_sft(*init, bad, o, &losses, &st);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_NE(st.message().find("sample 1"), std::string::npos) << st;
  bad = tiny_samples(2, 51);
  bad[0].score_from = 52;  // nothing to score
  train_sft(*init, bad, o, &losses, &st);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  bad = tiny_samples(1, 51);  // nothing left to train on once one is held out
  train_sft(*init, bad, o, &losses, &st);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
}

}  // namespace
}  // namespace edgeinf
