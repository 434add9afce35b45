#include "server/worker_pool.h"

#include <algorithm>

namespace sbits::server {

WorkerPool::WorkerPool(int threads) {
  for (int i = 1; i < std::max(1, threads); ++i) workers_.emplace_back([this] { work(); });
}

WorkerPool::~WorkerPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

void WorkerPool::drain() {
  for (int i = next_.fetch_add(1); i < n_; i = next_.fetch_add(1)) (*task_)(i);
}

void WorkerPool::run(int n, const std::function<void(int)>& task) {
  if (n <= 0) return;
  if (n == 1 || workers_.empty()) {  // nothing to share: skip the wake-ups
    for (int i = 0; i < n; ++i) task(i);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    task_ = &task;
    n_ = n;
    next_.store(0);
    busy_ = static_cast<int>(workers_.size());
    ++batch_;
  }
  wake_.notify_all();
  drain();
  std::unique_lock<std::mutex> lock(mu_);
  done_.wait(lock, [&] { return busy_ == 0; });
  task_ = nullptr;
}

void WorkerPool::work() {
  uint64_t seen = 0;
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    wake_.wait(lock, [&] { return stop_ || batch_ != seen; });
    if (stop_) return;
    seen = batch_;
    lock.unlock();
    drain();
    lock.lock();
    if (--busy_ == 0) done_.notify_one();
  }
}

}  // namespace sbits::server
