// The step scheduler with scripted jobs (no model, no store): rounds that give every active job one
// step, one batched feed per round, admission (jobs without room wait in line, run when room is
// given back, fail when their wait is over or they are cancelled), jobs that end by writing do so
// on an I/O thread, idle jobs that do not spin, and a shutdown that lets running jobs finish.
#include "engine/runtime/step_scheduler.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <mutex>
#include <string>
#include <vector>

namespace edgeinf {
namespace {

using Step = StepScheduler::Job::Step;

// What the test sees of the jobs: every step and feed in order, and how each job ended.
struct Log {
  std::mutex mu;
  std::vector<std::string> steps;  // job names, one per step
  std::vector<size_t> feeds;       // jobs per batched call
  void step(const std::string& name) {
    std::lock_guard<std::mutex> lock(mu);
    steps.push_back(name);
  }
};

class ScriptedJob final : public StepScheduler::Job {
 public:
  struct Script {
    std::function<Status()> prepare = [] { return absl::OkStatus(); };
    std::function<Step(int)> step;  // given the step's index; kEnded ends the job
    bool writes = false;
    std::atomic<bool> cancel{false};
    std::promise<Status> ended;
    std::thread::id end_thread;
    std::atomic<int> steps{0};
    std::function<void()> on_end;  // runs in end(), before the job reports its end
  };
  ScriptedJob(std::string name, Script* s, Log* log) : name_(std::move(name)), s_(s), log_(log) {}
  Status prepare() override { return s_->prepare(); }
  bool cancelled() const override { return s_->cancel; }
  Step step() override {
    log_->step(name_);
    return s_->step(s_->steps++);
  }
  bool writes_on_end() const override { return s_->writes; }
  void end(Status why) override {
    s_->end_thread = std::this_thread::get_id();
    if (s_->on_end) s_->on_end();
    s_->ended.set_value(std::move(why));
  }

 private:
  std::string name_;
  Script* s_;
  Log* log_;
};

// Steps kWorked n - 1 times, then kEnded.
std::function<Step(int)> steps(int n) {
  return [n](int i) { return i + 1 < n ? Step::kWorked : Step::kEnded; };
}

Status wait(ScriptedJob::Script& s) {
  auto f = s.ended.get_future();
  if (f.wait_for(std::chrono::seconds(20)) != std::future_status::ready) return absl::DeadlineExceededError("no end");
  return f.get();
}

StepScheduler::Config config(Log* log) {
  StepScheduler::Config c;
  c.io_threads = 2;
  c.admission_wait_ms = 10000;
  c.waits_for_room = [](const Status& st) { return st.code() == absl::StatusCode::kResourceExhausted; };
  c.feed = [log](std::span<StepScheduler::Job* const> jobs) {
    std::lock_guard<std::mutex> lock(log->mu);
    log->feeds.push_back(jobs.size());
    return absl::OkStatus();
  };
  return c;
}

TEST(StepScheduler, EveryActiveJobTakesOneStepPerRound) {
  Log log;
  StepScheduler sched(config(&log));
  ScriptedJob::Script a, b;
  a.step = [](int i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));  // long enough for b to join it
    return i + 1 < 200 ? Step::kWorked : Step::kEnded;
  };
  b.step = steps(5);  // b starts once a is running; from then on the two alternate
  sched.submit(std::make_unique<ScriptedJob>("a", &a, &log));
  while (a.steps < 3) std::this_thread::yield();
  sched.submit(std::make_unique<ScriptedJob>("b", &b, &log));
  EXPECT_TRUE(wait(b).ok());
  EXPECT_TRUE(wait(a).ok());
  EXPECT_EQ(a.steps, 200);
  EXPECT_EQ(b.steps, 5);
  size_t first_b = 0;
  while (log.steps[first_b] != "b") ++first_b;
  // From b's first step to its last: b a b a ... (a is first in each round, having arrived first).
  for (size_t i = first_b; i < first_b + 9; ++i) {
    EXPECT_EQ(log.steps[i], (i - first_b) % 2 == 0 ? "b" : "a") << "step " << i;
  }
}

TEST(StepScheduler, JobsThatFeedShareOneBatchedCallPerRound) {
  Log log;
  std::atomic<int> prepared{0};
  StepScheduler::Config c = config(&log);
  c.feed = [&](std::span<StepScheduler::Job* const> jobs) {
    // The first round waits until all three are prepared, so later rounds hold all three.
    while (prepared < 3) std::this_thread::yield();
    std::lock_guard<std::mutex> lock(log.mu);
    log.feeds.push_back(jobs.size());
    return absl::OkStatus();
  };
  StepScheduler sched(c);
  ScriptedJob::Script s[3];
  for (auto& x : s) {
    x.prepare = [&] {
      ++prepared;
      return absl::OkStatus();
    };
    x.step = [](int i) { return i < 4 ? Step::kFeed : Step::kEnded; };
  }
  for (int i = 0; i < 3; ++i) sched.submit(std::make_unique<ScriptedJob>(std::to_string(i), &s[i], &log));
  for (auto& x : s) EXPECT_TRUE(wait(x).ok());
  size_t fed = 0, largest = 0;
  for (size_t n : log.feeds) fed += n, largest = std::max(largest, n);
  EXPECT_EQ(fed, 12u);
  EXPECT_EQ(largest, 3u);
  EXPECT_LT(log.feeds.size(), 12u);
}

TEST(StepScheduler, AFailedFeedEndsEveryJobItFed) {
  Log log;
  StepScheduler::Config c = config(&log);
  c.feed = [](std::span<StepScheduler::Job* const>) { return absl::InternalError("device lost"); };
  StepScheduler sched(c);
  ScriptedJob::Script s;
  s.step = [](int) { return Step::kFeed; };
  sched.submit(std::make_unique<ScriptedJob>("a", &s, &log));
  const Status st = wait(s);
  EXPECT_EQ(st.code(), absl::StatusCode::kInternal);
  EXPECT_EQ(s.steps, 1);
}

TEST(StepScheduler, AJobWithoutRoomWaitsAndRunsWhenRoomIsGivenBack) {
  Log log;
  StepScheduler sched(config(&log));
  std::atomic<bool> room{false};
  std::atomic<int> tries{0};
  ScriptedJob::Script s;
  s.prepare = [&] {
    ++tries;
    return room ? absl::OkStatus() : absl::ResourceExhaustedError("no room");
  };
  s.step = steps(2);
  sched.submit(std::make_unique<ScriptedJob>("a", &s, &log));
  while (tries < 1) std::this_thread::yield();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(sched.stats().queued, 1);
  EXPECT_EQ(s.steps, 0);
  EXPECT_EQ(tries, 1);  // in line, not retried until room is given back
  room = true;
  sched.retry_waiting();
  EXPECT_TRUE(wait(s).ok());
  EXPECT_EQ(s.steps, 2);
  EXPECT_EQ(tries, 2);
}

TEST(StepScheduler, AJobWaitingForRoomFailsWhenItsWaitIsOverOrItIsCancelled) {
  Log log;
  StepScheduler::Config c = config(&log);
  c.admission_wait_ms = 300;
  StepScheduler sched(c);
  ScriptedJob::Script late, cancelled;
  for (auto* x : {&late, &cancelled}) {
    x->prepare = [] { return absl::ResourceExhaustedError("the budget is in use"); };
    x->step = steps(1);
  }
  const auto t0 = std::chrono::steady_clock::now();
  sched.submit(std::make_unique<ScriptedJob>("late", &late, &log));
  sched.submit(std::make_unique<ScriptedJob>("cancelled", &cancelled, &log));
  cancelled.cancel = true;
  const Status c_st = wait(cancelled);
  EXPECT_EQ(c_st.code(), absl::StatusCode::kCancelled) << c_st;
  const Status l_st = wait(late);
  EXPECT_EQ(l_st.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(l_st.message(), "the budget is in use");
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(300));
  EXPECT_EQ(late.steps + cancelled.steps, 0);
}

TEST(StepScheduler, APrepareErrorEndsTheJobWithoutAStep) {
  Log log;
  StepScheduler sched(config(&log));
  ScriptedJob::Script s;
  s.prepare = [] { return absl::NotFoundError("no such session"); };
  s.step = steps(1);
  sched.submit(std::make_unique<ScriptedJob>("a", &s, &log));
  EXPECT_EQ(wait(s).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(s.steps, 0);
}

TEST(StepScheduler, AJobThatWritesEndsOnAnIoThreadAndCountsAsCommitting) {
  Log log;
  StepScheduler sched(config(&log));
  ScriptedJob::Script w, r;
  std::thread::id step_thread;
  w.writes = true;
  w.step = [&](int) {
    step_thread = std::this_thread::get_id();
    return Step::kEnded;
  };
  std::promise<void> go;
  std::shared_future<void> gone = go.get_future().share();
  std::atomic<bool> writing{false};
  w.on_end = [&] {
    writing = true;
    gone.wait();
  };
  sched.submit(std::make_unique<ScriptedJob>("w", &w, &log));
  while (!writing) std::this_thread::yield();
  EXPECT_EQ(sched.stats().committing, 1);
  EXPECT_EQ(sched.stats().active, 0);
  go.set_value();
  EXPECT_TRUE(wait(w).ok());
  EXPECT_NE(w.end_thread, step_thread);
  // A job that does not write ends on the scheduler's thread.
  std::thread::id r_step;
  r.step = [&](int) {
    r_step = std::this_thread::get_id();
    return Step::kEnded;
  };
  sched.submit(std::make_unique<ScriptedJob>("r", &r, &log));
  EXPECT_TRUE(wait(r).ok());
  EXPECT_EQ(r.end_thread, r_step);
}

TEST(StepScheduler, IdleJobsDoNotSpinAndWakeWhenInputArrives) {
  Log log;
  StepScheduler sched(config(&log));
  std::atomic<bool> input{false};
  ScriptedJob::Script s;
  s.step = [&](int) { return input ? Step::kEnded : Step::kIdle; };
  sched.submit(std::make_unique<ScriptedJob>("a", &s, &log));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const int idle_steps = s.steps;
  EXPECT_GE(idle_steps, 1);
  EXPECT_LE(idle_steps, 40);  // it sleeps between looks (50 ms) instead of spinning
  input = true;
  sched.wake();
  EXPECT_TRUE(wait(s).ok());
}

TEST(StepScheduler, ShutdownLetsRunningJobsFinishAndRefusesNewOnes) {
  Log log;
  auto sched = std::make_unique<StepScheduler>(config(&log));
  ScriptedJob::Script running, late;
  running.step = [](int i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    return i + 1 < 50 ? Step::kWorked : Step::kEnded;
  };
  late.step = steps(1);
  sched->submit(std::make_unique<ScriptedJob>("running", &running, &log));
  while (running.steps < 1) std::this_thread::yield();
  sched->shutdown();
  EXPECT_TRUE(wait(running).ok());
  EXPECT_EQ(running.steps, 50);
  sched->submit(std::make_unique<ScriptedJob>("late", &late, &log));
  EXPECT_EQ(wait(late).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(late.steps, 0);
}

}  // namespace
}  // namespace edgeinf
