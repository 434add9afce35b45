// Continuous batching: N slots over one multi-slot KV cache and one Forward, driven by one
// thread.
//
// Each step builds one batch of rows: one decode row for every slot that is generating, then
// prompt rows of newly admitted requests (oldest first, up to `prefill_rows` per step), and
// runs it in a single Forward::run. Rows of one batch are independent in the engine, so a
// request's tokens do not depend on what it was batched with: at temperature 0 a request gives
// the same text alone or beside 15 others. Between steps, queued requests take free slots, and
// cancelled, finished or timed-out requests leave theirs at once.
//
// Threading: every Forward call runs on the scheduler's own thread (backends need not be
// thread-safe across ops); after it, the slots' tokens are sampled in parallel (each slot's
// state is its own). submit(), stats() and shutdown() may be called from any thread.
// Failures: a fault in the forward pass finishes the requests of that batch with
// FinishReason::error (and is logged); the scheduler keeps serving the others.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "engine/forward.h"
#include "server/job.h"
#include "server/worker_pool.h"

namespace sbits::server {

struct SchedulerOptions {
  int n_slots = 4;          // requests generated at once
  int n_ctx = 0;            // positions per slot; 0: the model's context length, at most 4096
  int max_queue = 64;       // requests waiting for a slot; beyond: submit() refuses
  int prefill_rows = 64;    // prompt tokens per step (all admitted requests together)
  double timeout_s = 600;   // from submit() to the last token; 0: none
  kernels::KvType kv_type = kernels::KvType::f16;
  int sampling_threads = 0; // threads sampling the slots of a step; 0: min(n_slots, cores)
};

struct SchedulerStats {
  int slots_total = 0;
  int slots_busy = 0;
  int peak_slots_busy = 0;  // the most slots ever busy at once (batching at work)
  int queue_length = 0;
  uint64_t admitted = 0, completed = 0, cancelled = 0, timed_out = 0, failed = 0, rejected = 0;
  uint64_t prompt_tokens = 0, generated_tokens = 0;
  uint64_t steps = 0, batch_rows = 0;
  double forward_seconds = 0;  // time in Forward::run
  double sample_seconds = 0;   // time choosing tokens and detokenizing, after the forward pass
  double tokens_per_second = 0;  // generated tokens over the last few seconds
};

class Scheduler {
 public:
  // Starts the thread. Throws EngineError for options out of range or a KV cache that cannot
  // be allocated.
  Scheduler(const Model& model, const SchedulerOptions& options);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  int n_ctx() const { return n_ctx_; }
  int n_slots() const { return options_.n_slots; }

  // Queues a request (prompt non-empty and shorter than n_ctx(): the caller checks). Returns
  // nullptr when the queue is full or the scheduler is shutting down.
  std::shared_ptr<Job> submit(GenerationRequest request);

  // Finishes every queued and running job as cancelled and stops the thread. Idempotent.
  void shutdown();

  SchedulerStats stats() const;

 private:
  struct Slot;
  void loop();
  bool wait_for_work();
  void admit();
  void start(Slot& slot, std::shared_ptr<Job> job);
  void retire_cancelled();
  void step();
  void build_batch();
  void fail_batch(const std::string& what);
  void sample(size_t j);
  void on_sampled(Slot& slot, int32_t id);
  void finish(Slot& slot, FinishReason reason, std::string error = {});
  void count_finished(FinishReason reason);
  void count_generated(uint64_t n);

  const Model& model_;
  const SchedulerOptions options_;
  const int n_ctx_;
  const int32_t vocab_;
  Forward forward_;
  std::unique_ptr<kernels::KvCache> cache_;
  std::vector<Slot> slots_;  // touched only by the scheduler thread
  uint64_t next_seq_ = 0;

  // The batch being built (scheduler thread only).
  std::vector<int32_t> tokens_;
  std::vector<kernels::RowInfo> rows_;
  std::vector<int32_t> logit_rows_;
  std::vector<int> logit_slots_;
  std::vector<float> logits_;
  // When every sampled row's sampler needs only its top-k (Sampler::candidates_needed), the
  // backend selects them (Forward::run_top_k): top_k_ ids and logits per row instead of vocab_.
  int top_k_ = 0;
  std::vector<int32_t> top_ids_;
  std::vector<float> top_logits_;

  mutable std::mutex mu_;  // guards queue_, stopping_ and the rate window
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> queue_;
  bool stopping_ = false;
  std::deque<std::pair<std::chrono::steady_clock::time_point, uint64_t>> rate_window_;
  WorkerPool sampling_pool_;

  std::atomic<int> busy_{0}, peak_busy_{0};
  std::atomic<uint64_t> admitted_{0}, completed_{0}, cancelled_{0}, timed_out_{0}, failed_{0}, rejected_{0};
  std::atomic<uint64_t> prompt_tokens_{0}, generated_tokens_{0}, steps_{0}, batch_rows_{0};
  std::atomic<uint64_t> forward_ns_{0}, sample_ns_{0};
  std::thread thread_;
};

}  // namespace sbits::server
