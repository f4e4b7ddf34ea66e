// The step scheduler: jobs (a service's turns) prepared on I/O threads, run in rounds by one
// scheduler thread (every active job takes one step per round, so a long upload never starves the
// other streams; jobs that decode are fed in one batched call per round), and ended on an I/O
// thread when they write something (a session's commit). Jobs that find no room in the memory
// budget wait in line, oldest first, until room is given back or their wait is over.
// The scheduler knows nothing of models or sessions: the engine's turns are Jobs.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include "engine/util/status.h"

namespace edgeinf {

class StepScheduler {
 public:
  using Clock = std::chrono::steady_clock;

  class Job {
   public:
    enum class Step {
      kIdle,    // did nothing: waits for input (the scheduler sleeps when every job is idle)
      kWorked,  // did a step
      kFeed,    // did a step and has a token for this round's batched call
      kEnded,   // ended with its own result (end() is called with OK)
    };
    virtual ~Job() = default;
    // On an I/O thread, before the first step, and again after waiting for room. A status for
    // which Config::waits_for_room holds puts the job in line; any other error ends it.
    virtual Status prepare() = 0;
    // Polled while the job waits in line (steps poll it themselves).
    virtual bool cancelled() const = 0;
    // On the scheduler thread: one step.
    virtual Step step() = 0;
    // Whether end() writes (runs on an I/O thread, counted as committing), else it runs on the
    // thread that ended the job.
    virtual bool writes_on_end() const = 0;
    // Called exactly once: OK when a step ended the job, else why it failed.
    virtual void end(Status why) = 0;
  };

  struct Config {
    int io_threads = 4;
    int admission_wait_ms = 10000;  // the longest a job waits in line for room
    // A prepare() status that means "no room yet": the job waits in line (and fails with that
    // status when its wait is over).
    std::function<bool(const Status&)> waits_for_room;
    // The round's batched call for the jobs whose step returned kFeed; an error ends them all.
    std::function<Status(std::span<Job* const>)> feed;
  };

  struct Stats {
    int64_t queued = 0;      // being prepared, ready, or waiting for room
    int64_t active = 0;      // being stepped
    int64_t committing = 0;  // ending on an I/O thread
  };

  explicit StepScheduler(Config config);
  ~StepScheduler();  // shutdown()

  // Takes the job; it ends (end() called) whatever happens, Unavailable after shutdown began.
  void submit(std::unique_ptr<Job> job);
  // Room was given back: jobs waiting in line are prepared again.
  void retry_waiting();
  // Input arrived for an idle job: the scheduler looks again at once.
  void wake();
  // Refuses new jobs, lets the running and queued ones end, joins every thread.
  void shutdown();
  Stats stats();
  // Runs a task on an I/O thread.
  void io(std::function<void()> task);

 private:
  struct Entry {
    std::unique_ptr<Job> job;
    Clock::time_point arrival = Clock::now();
    Status no_room;  // waiting: the status that put it in line
  };
  void loop();
  void io_loop();
  void prepare(Entry e);
  void expire_waiting();
  // Ends a job (on an I/O thread when it writes), then counts it out.
  void end(Entry e, Status why);
  void ended();

  const Config config_;
  std::mutex mu_;
  std::condition_variable cv_;       // the scheduler: jobs ready, input arrived, stopping
  std::condition_variable idle_cv_;  // in_flight_ reached 0
  std::condition_variable io_cv_;
  std::deque<Entry> ready_;
  std::vector<Entry> active_;
  std::deque<Entry> waiting_;  // for room, oldest first
  int64_t preparing_ = 0, committing_ = 0, in_flight_ = 0;
  bool stopping_ = false, woken_ = false, io_stop_ = false;
  std::deque<std::function<void()>> io_queue_;
  std::thread thread_;
  std::vector<std::thread> io_threads_;
};

}  // namespace edgeinf
