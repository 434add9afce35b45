// A fixed set of threads that run one batch of independent tasks at a time.
//
// The scheduler samples the tokens of all slots of a step here: sampling a 32000-token
// vocabulary at temperature > 0 costs about as much per token as a small model's forward pass,
// and the slots' samplers are independent, so their work spreads over the cores that the
// forward pass has just left idle.
// Threading: run() is called by one thread at a time (the scheduler's).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace sbits::server {

class WorkerPool {
 public:
  // `threads` in total, the caller of run() included (1: everything runs on the caller).
  explicit WorkerPool(int threads);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  int threads() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls task(i) for every i in [0, n) and returns when all calls have returned. The calls
  // run concurrently; task must not throw.
  void run(int n, const std::function<void(int)>& task);

 private:
  void work();
  void drain();

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable wake_, done_;
  const std::function<void(int)>* task_ = nullptr;
  int n_ = 0;
  std::atomic<int> next_{0};
  int busy_ = 0;           // workers still inside the current batch
  uint64_t batch_ = 0;     // incremented per run(), so each worker joins each batch once
  bool stop_ = false;
};

}  // namespace sbits::server
