#include "kernels/cpu/thread_pool.h"

#include <chrono>

#if defined(__linux__)
#include <sched.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace sbits::kernels::cpu {
namespace {

// How long a thread spins before it sleeps. Long enough to bridge the gap between two ops of a
// forward pass (a few microseconds of single-threaded work), short enough that an idle process
// gives its cores back almost at once.
constexpr auto kSpinTime = std::chrono::microseconds(100);

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#endif
}

// Spins until done() or the spin time is over; returns done().
template <class Done>
bool spin_until(Done done) {
  const auto deadline = std::chrono::steady_clock::now() + kSpinTime;
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (done()) return true;
      cpu_relax();
    }
    if (std::chrono::steady_clock::now() > deadline) return done();
  }
}

}  // namespace

int available_cpus() {
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
#endif
  const unsigned n = std::thread::hardware_concurrency();
  return n > 0 ? int(n) : 1;
}

ThreadPool::ThreadPool(int n_threads) : n_threads_(n_threads < 1 ? 1 : n_threads) {
  threads_.reserve(size_t(n_threads_ - 1));
  for (int i = 1; i < n_threads_; ++i) threads_.emplace_back([this, i] { worker_main(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(run_mutex_);
    stop_.store(true, std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);
    generation_.notify_all();
  }
  for (auto& t : threads_) t.join();
}

void ThreadPool::call(int index) {
  try {
    fn_(ctx_, index);
  } catch (...) {
    std::lock_guard<std::mutex> lock(error_mutex_);
    if (!error_) error_ = std::current_exception();
  }
}

void ThreadPool::worker_main(int index) {
  uint32_t seen = 0;
  for (;;) {
    spin_until([&] { return generation_.load(std::memory_order_acquire) != seen; });
    uint32_t g;
    while ((g = generation_.load(std::memory_order_acquire)) == seen) generation_.wait(seen, std::memory_order_acquire);
    seen = g;
    if (stop_.load(std::memory_order_relaxed)) return;
    // Join only an open job; fn_ and ctx_ are read after the CAS, which orders them after the
    // caller's writes.
    uint32_t s = job_.load(std::memory_order_acquire);
    bool joined = false;
    while (!(s & kJobClosed) && !joined)
      joined = job_.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel, std::memory_order_acquire);
    if (!joined) continue;
    // While we are inside, no new job can start: this is the generation we joined.
    seen = generation_.load(std::memory_order_acquire);
    call(index);
    if (job_.fetch_sub(1, std::memory_order_acq_rel) - 1 == kJobClosed) job_.notify_all();
  }
}

void ThreadPool::run_impl(Fn fn, void* ctx) {
  std::lock_guard<std::mutex> lock(run_mutex_);
  fn_ = fn;
  ctx_ = ctx;
  error_ = nullptr;
  if (n_threads_ > 1) {
    job_.store(0, std::memory_order_release);
    generation_.fetch_add(1, std::memory_order_release);
    generation_.notify_all();
  }
  call(0);
  if (n_threads_ > 1) {
    uint32_t s = job_.fetch_or(kJobClosed, std::memory_order_acq_rel) | kJobClosed;
    if (s != kJobClosed) {
      spin_until([&] { return job_.load(std::memory_order_acquire) == kJobClosed; });
      while ((s = job_.load(std::memory_order_acquire)) != kJobClosed) job_.wait(s, std::memory_order_acquire);
    }
  }
  if (error_) {
    std::exception_ptr e = error_;
    error_ = nullptr;
    std::rethrow_exception(e);
  }
}

}  // namespace sbits::kernels::cpu
