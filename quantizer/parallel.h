// A small fork-join loop for the quantizer's coarse work items (strips of tiles, tensors).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace sbits::quantizer {

// Calls f(i) for i in [0, n) on up to `threads` threads (the caller is one), handing items out
// dynamically. The first exception thrown by f is rethrown here after every thread stopped.
template <class F>
void parallel_for(int64_t n, int threads, F&& f) {
  const int t = int(std::clamp<int64_t>(threads, 1, std::max<int64_t>(n, 1)));
  std::atomic<int64_t> next{0};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto work = [&] {
    for (int64_t i; (i = next.fetch_add(1)) < n;) {
      try {
        f(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) error = std::current_exception();
        next.store(n);  // stop handing out work
      }
    }
  };
  std::vector<std::thread> pool;
  for (int i = 1; i < t; ++i) pool.emplace_back(work);
  work();
  for (auto& th : pool) th.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace sbits::quantizer
