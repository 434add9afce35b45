// A persistent fork-join pool: run(f) calls f(thread_index) on the caller (thread 0) and on
// each worker that joins in time, and returns when all of those have finished. Threads are
// created once, so an op costs a wake-up, not a thread start.
//
// Joining is optional: a worker that wakes after the caller has finished its own share finds
// the job closed and skips it. So f must split its work dynamically (the backend's
// parallel_for hands out chunks from an atomic counter) and never rely on every index
// running. The payoff: on a machine shared with other processes the caller never waits for a
// worker the OS has not scheduled yet; it only waits for workers that joined and are mid-chunk.
//
// Waiting: idle workers spin briefly (ops of one forward pass follow each other within
// microseconds), then sleep on the generation counter (a futex on Linux) so an idle engine uses
// no CPU. The counters sit on their own cache lines so that spinning readers do not slow the
// writers.
//
// Exceptions thrown by f on any thread are caught; the first one is rethrown from run().
// run() is serialized by a mutex: concurrent callers take turns; f must not call run().
#pragma once

#include <atomic>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace sbits::kernels::cpu {

class ThreadPool {
 public:
  explicit ThreadPool(int n_threads);  // n_threads >= 1, including the caller
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  template <class F>
  void run(F&& f) {
    run_impl([](void* ctx, int index) { (*static_cast<std::remove_reference_t<F>*>(ctx))(index); },
             const_cast<void*>(static_cast<const void*>(&f)));
  }

 private:
  using Fn = void (*)(void*, int);
  void run_impl(Fn fn, void* ctx);
  void worker_main(int index);
  void call(int index);

  const int n_threads_;
  std::vector<std::thread> threads_;
  std::mutex run_mutex_;

  // Written by the caller before it bumps generation_, read by workers after they see it.
  Fn fn_ = nullptr;
  void* ctx_ = nullptr;
  std::atomic<bool> stop_{false};

  // job_: kJobClosed | number of workers inside the current job. Opened (0) before the
  // generation is bumped; closed by the caller once its own share is done.
  static constexpr uint32_t kJobClosed = 0x80000000u;
  alignas(64) std::atomic<uint32_t> generation_{0};
  alignas(64) std::atomic<uint32_t> job_{kJobClosed};
  alignas(64) std::mutex error_mutex_;
  std::exception_ptr error_;
};

// Number of CPUs this process may run on (its affinity mask), at least 1.
int available_cpus();

}  // namespace sbits::kernels::cpu
