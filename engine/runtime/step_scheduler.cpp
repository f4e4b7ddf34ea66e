#include "engine/runtime/step_scheduler.h"

#include <optional>
#include <utility>

namespace edgeinf {

StepScheduler::StepScheduler(Config config) : config_(std::move(config)) {
  for (int i = 0; i < std::max(1, config_.io_threads); ++i) io_threads_.emplace_back([this] { io_loop(); });
  thread_ = std::thread([this] { loop(); });
}

StepScheduler::~StepScheduler() { shutdown(); }

void StepScheduler::shutdown() {
  {
    std::unique_lock<std::mutex> lock(mu_);
    stopping_ = true;
    cv_.notify_all();
    idle_cv_.wait(lock, [&] { return in_flight_ == 0; });
  }
  if (thread_.joinable()) thread_.join();
  {
    std::lock_guard<std::mutex> lock(mu_);
    io_stop_ = true;
  }
  io_cv_.notify_all();
  for (std::thread& t : io_threads_) {
    if (t.joinable()) t.join();
  }
}

StepScheduler::Stats StepScheduler::stats() {
  std::lock_guard<std::mutex> lock(mu_);
  Stats s;
  s.queued = preparing_ + int64_t(ready_.size()) + int64_t(waiting_.size());
  s.active = int64_t(active_.size());
  s.committing = committing_;
  return s;
}

void StepScheduler::wake() {
  std::lock_guard<std::mutex> lock(mu_);
  woken_ = true;
  cv_.notify_all();
}

// ---- I/O threads --------------------------------------------------------------------------------

void StepScheduler::io(std::function<void()> task) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    io_queue_.push_back(std::move(task));
  }
  io_cv_.notify_one();
}

void StepScheduler::io_loop() {
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock<std::mutex> lock(mu_);
      io_cv_.wait(lock, [&] { return !io_queue_.empty() || io_stop_; });
      if (io_queue_.empty()) return;
      task = std::move(io_queue_.front());
      io_queue_.pop_front();
    }
    task();
  }
}

// ---- a job's life -------------------------------------------------------------------------------

void StepScheduler::submit(std::unique_ptr<Job> job) {
  bool refused = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    refused = stopping_;
    if (!refused) ++in_flight_, ++preparing_;
  }
  if (refused) {
    job->end(absl::UnavailableError("the server is shutting down"));
    return;
  }
  auto e = std::make_shared<Entry>();
  e->job = std::move(job);
  io([this, e] { prepare(std::move(*e)); });
}

void StepScheduler::prepare(Entry e) {
  const Status st = e.job->prepare();
  std::unique_lock<std::mutex> lock(mu_);
  --preparing_;
  cv_.notify_all();
  if (st.ok()) {
    ready_.push_back(std::move(e));
    return;
  }
  const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - e.arrival);
  if (config_.waits_for_room && config_.waits_for_room(st) && !stopping_ &&
      waited.count() < config_.admission_wait_ms) {
    e.no_room = st;
    waiting_.push_back(std::move(e));
    return;
  }
  lock.unlock();
  end(std::move(e), st);
}

void StepScheduler::retry_waiting() {
  std::vector<std::shared_ptr<Entry>> again;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (Entry& e : waiting_) again.push_back(std::make_shared<Entry>(std::move(e)));
    waiting_.clear();
    preparing_ += int64_t(again.size());
  }
  for (auto& e : again) io([this, e] { prepare(std::move(*e)); });
}

void StepScheduler::expire_waiting() {
  std::vector<std::pair<Entry, Status>> expired;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const auto now = Clock::now();
    for (size_t i = waiting_.size(); i-- > 0;) {
      Entry& e = waiting_[i];
      Status why;
      if (stopping_) {
        why = absl::UnavailableError("the server is shutting down");
      } else if (e.job->cancelled()) {
        why = absl::CancelledError("the request was cancelled");
      } else if (std::chrono::duration_cast<std::chrono::milliseconds>(now - e.arrival).count() >=
                 config_.admission_wait_ms) {
        why = e.no_room;
      } else {
        continue;
      }
      expired.emplace_back(std::move(e), why);
      waiting_.erase(waiting_.begin() + ptrdiff_t(i));
    }
  }
  for (auto& [e, why] : expired) end(std::move(e), why);
}

void StepScheduler::end(Entry e, Status why) {
  if (why.ok() && e.job->writes_on_end()) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++committing_;
    }
    auto owned = std::make_shared<Entry>(std::move(e));
    io([this, owned] {
      owned->job->end(absl::OkStatus());
      owned->job.reset();
      {
        std::lock_guard<std::mutex> lock(mu_);
        --committing_;
      }
      ended();
    });
    return;
  }
  e.job->end(std::move(why));
  e.job.reset();
  ended();
}

void StepScheduler::ended() {
  std::lock_guard<std::mutex> lock(mu_);
  if (--in_flight_ == 0) idle_cv_.notify_all();
}

// ---- the scheduler thread -----------------------------------------------------------------------

void StepScheduler::loop() {
  for (;;) {
    expire_waiting();
    {
      std::unique_lock<std::mutex> lock(mu_);
      const bool go = cv_.wait_for(lock, std::chrono::milliseconds(100), [&] {
        return !ready_.empty() || !active_.empty() || (stopping_ && preparing_ == 0);
      });
      if (stopping_ && preparing_ == 0 && ready_.empty() && active_.empty() && waiting_.empty()) return;
      if (!go) continue;
      while (!ready_.empty()) {
        active_.push_back(std::move(ready_.front()));
        ready_.pop_front();
      }
      woken_ = false;
    }
    // One round: a step of every active job, then one batched call for the jobs that feed.
    std::vector<std::optional<Status>> ended(active_.size());
    std::vector<Job*> feed;
    std::vector<size_t> fed;
    bool worked = false;
    for (size_t i = 0; i < active_.size(); ++i) {
      switch (active_[i].job->step()) {
        case Job::Step::kIdle: break;
        case Job::Step::kWorked: worked = true; break;
        case Job::Step::kFeed:
          worked = true;
          feed.push_back(active_[i].job.get());
          fed.push_back(i);
          break;
        case Job::Step::kEnded:
          worked = true;
          ended[i] = absl::OkStatus();
          break;
      }
    }
    if (!feed.empty()) {
      const Status st = config_.feed(feed);
      if (!st.ok()) {
        for (size_t i : fed) ended[i] = st;
      }
    }
    std::vector<std::pair<Entry, Status>> finished;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (size_t i = active_.size(); i-- > 0;) {
        if (!ended[i]) continue;
        finished.emplace_back(std::move(active_[i]), std::move(*ended[i]));
        active_.erase(active_.begin() + ptrdiff_t(i));
      }
    }
    for (auto& [e, why] : finished) end(std::move(e), std::move(why));
    if (!worked) {
      // Every job waits for input: sleep until some arrives or a job is queued, and look again
      // now and then for cancellations.
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(50), [&] { return woken_ || !ready_.empty() || stopping_; });
    }
  }
}

}  // namespace edgeinf
