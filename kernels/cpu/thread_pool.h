// A fixed pool of worker threads for data-parallel kernels; the calling thread works too.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace edgeinf::kernels::cpu {

class ThreadPool {
 public:
  // n_threads counts the caller: ThreadPool(1) runs everything inline.
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int n_threads() const { return int(workers_.size()) + 1; }

  // Calls fn(task) once for every task in [0, n_tasks), spread over all threads, and returns when
  // all calls have returned. Not reentrant: fn must not call run() on the same pool.
  template <typename Fn>
  void run(int64_t n_tasks, Fn&& fn) {
    run_impl(
        n_tasks, [](void* ctx, int64_t task) { (*static_cast<Fn*>(ctx))(task); }, &fn);
  }

  // Calls fn() exactly once on every thread of the pool, the caller's included (for per-thread
  // state): each of n_threads tasks waits until all have started, so no thread takes two.
  template <typename Fn>
  void run_on_each_thread(Fn&& fn) {
    std::atomic<int> started{0};
    const int n = n_threads();
    run(n, [&](int64_t) {
      started.fetch_add(1, std::memory_order_acq_rel);
      while (started.load(std::memory_order_acquire) < n) std::this_thread::yield();
      fn();
    });
  }

 private:
  using TaskFn = void (*)(void*, int64_t);
  void run_impl(int64_t n_tasks, TaskFn fn, void* ctx);
  void worker_loop();
  void drain();

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int64_t> next_task_{0};
  std::atomic<int> busy_workers_{0};
  std::atomic<bool> stop_{false};
  int64_t n_tasks_ = 0;
  TaskFn fn_ = nullptr;
  void* ctx_ = nullptr;
};

}  // namespace edgeinf::kernels::cpu
