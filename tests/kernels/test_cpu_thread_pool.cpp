// The CPU backend's fork-join pool: every chunk of a dynamically split job runs exactly once,
// whichever workers join; exceptions reach the caller; the pool survives both and shuts down
// cleanly whether its workers spin or sleep.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

#include "kernels/cpu/thread_pool.h"

namespace sbits::kernels::cpu {
namespace {

// Splits [0, total) into chunks handed out by an atomic counter, like the backend does, and
// counts how often each index was visited.
void run_chunks(ThreadPool& pool, std::vector<std::atomic<int>>& hits, int64_t grain) {
  std::atomic<int64_t> next{0};
  const int64_t total = int64_t(hits.size());
  std::atomic<int> bad_index{0};
  pool.run([&](int thread) {
    if (thread < 0 || thread >= pool.size()) bad_index.fetch_add(1);
    for (;;) {
      const int64_t b = next.fetch_add(grain);
      if (b >= total) return;
      for (int64_t i = b; i < std::min(total, b + grain); ++i) hits[size_t(i)].fetch_add(1);
    }
  });
  CHECK(bad_index.load() == 0);
}

TEST_CASE("thread pool: every chunk runs exactly once, over many jobs") {
  for (int threads : {1, 2, 3, 8}) {
    ThreadPool pool(threads);
    CHECK(pool.size() == threads);
    for (int job = 0; job < 2000; ++job) {
      std::vector<std::atomic<int>> hits(size_t(1 + job % 97));
      run_chunks(pool, hits, 1 + job % 5);
      for (auto& h : hits) REQUIRE(h.load() == 1);
    }
  }
}

TEST_CASE("thread pool: an exception on any thread reaches the caller, and the pool goes on") {
  ThreadPool pool(4);
  for (int victim : {0, 1, 3}) {
    // The caller holds the job open until every worker has joined (or 10 s pass on a machine
    // too busy to schedule them), so the victim is sure to run.
    std::atomic<int> arrived{0};
    auto job = [&](int thread) {
      arrived.fetch_add(1);
      if (thread == 0) {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (arrived.load() < pool.size() && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
      }
      if (thread == victim) throw std::runtime_error("boom " + std::to_string(thread));
    };
    CHECK_THROWS_WITH_AS(pool.run(job), ("boom " + std::to_string(victim)).c_str(), std::runtime_error);
    std::vector<std::atomic<int>> hits(50);
    run_chunks(pool, hits, 3);
    for (auto& h : hits) CHECK(h.load() == 1);
  }
}

TEST_CASE("thread pool: jobs after the workers went to sleep, then shutdown") {
  ThreadPool pool(3);
  std::vector<std::atomic<int>> hits(100);
  run_chunks(pool, hits, 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(5));  // past the spin: workers sleep
  std::vector<std::atomic<int>> again(100);
  run_chunks(pool, again, 1);
  for (auto& h : again) CHECK(h.load() == 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
}  // destroyed with sleeping workers

TEST_CASE("thread pool: available_cpus is at least 1") { CHECK(available_cpus() >= 1); }

}  // namespace
}  // namespace sbits::kernels::cpu
