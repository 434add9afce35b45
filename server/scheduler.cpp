#include "server/scheduler.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>

#include "engine/stop_matcher.h"
#include "engine/text/tokenizer.h"

namespace sbits::server {
namespace {

using Clock = std::chrono::steady_clock;

// The window over which /metrics reports generated tokens per second.
constexpr auto kRateWindow = std::chrono::seconds(5);

SchedulerOptions validated(const SchedulerOptions& o) {
  if (o.n_slots < 1 || o.n_slots > 1024) throw EngineError(fmt::format("parallel slots must be in [1, 1024], got {}", o.n_slots));
  if (o.n_ctx < 0) throw EngineError(fmt::format("context length must be >= 0, got {}", o.n_ctx));
  if (o.max_queue < 0) throw EngineError(fmt::format("queue length must be >= 0, got {}", o.max_queue));
  if (o.prefill_rows < 1) throw EngineError(fmt::format("prefill rows per step must be >= 1, got {}", o.prefill_rows));
  if (!(o.timeout_s >= 0)) throw EngineError(fmt::format("timeout must be >= 0 seconds, got {}", o.timeout_s));
  return o;
}

// Without --ctx, each slot gets the model's context up to this many positions: the KV cache
// is n_slots times a context, and models trained on 128K positions would not fit otherwise.
constexpr uint64_t kDefaultMaxCtx = 4096;

int sampling_threads(const SchedulerOptions& o) {
  if (o.sampling_threads > 0) return o.sampling_threads;
  return std::max(1, std::min(o.n_slots, static_cast<int>(std::thread::hardware_concurrency())));
}

int resolve_ctx(const Model& model, int requested) {
  if (requested > 0) return requested;
  return static_cast<int>(std::min<uint64_t>(model.config().context_length, kDefaultMaxCtx));
}

}  // namespace

struct Scheduler::Slot {
  std::shared_ptr<Job> job;  // nullptr: the slot is free
  uint64_t seq = 0;          // admission order: older requests prefill first
  std::unique_ptr<Sampler> sampler;
  std::unique_ptr<StreamDecoder> decoder;
  std::unique_ptr<StopMatcher> stops;
  int n_prompt = 0;
  int n_fed = 0;         // positions of this slot already in the KV cache
  int32_t next = -1;     // the sampled token to feed at position n_fed; -1 while prefilling
  int32_t prev = -1;     // the last token of the sequence (for the text of the next one)
  int generated = 0;
};

Scheduler::Scheduler(const Model& model, const SchedulerOptions& options)
    : model_(model),
      options_(validated(options)),
      n_ctx_(resolve_ctx(model, options.n_ctx)),
      vocab_(static_cast<int32_t>(model.config().vocab_size)),
      forward_(model, options.n_slots + options.prefill_rows),
      sampling_pool_(sampling_threads(options)) {
  cache_ = forward_.make_kv_cache(options_.n_slots, n_ctx_, options_.kv_type);
  slots_.resize(static_cast<size_t>(options_.n_slots));
  logits_.resize(static_cast<size_t>(options_.n_slots) * static_cast<size_t>(vocab_));
  thread_ = std::thread([this] { loop(); });
}

Scheduler::~Scheduler() { shutdown(); }

std::shared_ptr<Job> Scheduler::submit(GenerationRequest request) {
  auto job = std::make_shared<Job>(std::move(request));
  job->deadline = options_.timeout_s > 0
                      ? Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(options_.timeout_s))
                      : Clock::time_point::max();
  {
    std::lock_guard<std::mutex> lock(mu_);
    // Jobs that free slots will take at the next step do not count against the queue limit.
    const size_t free_slots = static_cast<size_t>(std::max(0, options_.n_slots - busy_.load()));
    if (stopping_ || queue_.size() >= static_cast<size_t>(options_.max_queue) + free_slots) {
      rejected_.fetch_add(1);
      return nullptr;
    }
    queue_.push_back(job);
  }
  cv_.notify_one();
  return job;
}

void Scheduler::shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  // The thread is gone: what is left is finished from here.
  for (Slot& s : slots_)
    if (s.job) finish(s, FinishReason::cancelled, "the server is shutting down");
  std::deque<std::shared_ptr<Job>> left;
  {
    std::lock_guard<std::mutex> lock(mu_);
    left.swap(queue_);
  }
  for (auto& job : left) {
    count_finished(FinishReason::cancelled);
    job->finish(FinishReason::cancelled, 0, 0, "the server is shutting down");
  }
}

SchedulerStats Scheduler::stats() const {
  SchedulerStats s;
  s.slots_total = options_.n_slots;
  s.slots_busy = busy_.load();
  s.peak_slots_busy = peak_busy_.load();
  s.admitted = admitted_.load();
  s.completed = completed_.load();
  s.cancelled = cancelled_.load();
  s.timed_out = timed_out_.load();
  s.failed = failed_.load();
  s.rejected = rejected_.load();
  s.prompt_tokens = prompt_tokens_.load();
  s.generated_tokens = generated_tokens_.load();
  s.steps = steps_.load();
  s.batch_rows = batch_rows_.load();
  s.forward_seconds = static_cast<double>(forward_ns_.load()) * 1e-9;
  s.sample_seconds = static_cast<double>(sample_ns_.load()) * 1e-9;
  std::lock_guard<std::mutex> lock(mu_);
  s.queue_length = static_cast<int>(queue_.size());
  const auto since = Clock::now() - kRateWindow;
  uint64_t recent = 0;
  for (const auto& [t, n] : rate_window_)
    if (t >= since) recent += n;
  s.tokens_per_second = static_cast<double>(recent) / std::chrono::duration<double>(kRateWindow).count();
  return s;
}

void Scheduler::loop() {
  while (wait_for_work()) {
    retire_cancelled();
    admit();
    step();
  }
}

bool Scheduler::wait_for_work() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return stopping_ || !queue_.empty() || busy_.load() > 0; });
  return !stopping_;
}

void Scheduler::admit() {
  std::vector<std::shared_ptr<Job>> starting, dropped;
  size_t free_slots = static_cast<size_t>(std::count_if(slots_.begin(), slots_.end(), [](const Slot& s) { return !s.job; }));
  const auto now = Clock::now();
  {
    std::lock_guard<std::mutex> lock(mu_);
    // Queued jobs whose client left or whose time ran out leave the queue even when no slot is free.
    for (auto it = queue_.begin(); it != queue_.end();) {
      if ((*it)->cancelled() || now >= (*it)->deadline) {
        dropped.push_back(std::move(*it));
        it = queue_.erase(it);
      } else {
        ++it;
      }
    }
    while (free_slots > 0 && !queue_.empty()) {
      starting.push_back(std::move(queue_.front()));
      queue_.pop_front();
      --free_slots;
    }
  }
  for (auto& job : dropped) {
    const bool cancelled = job->cancelled();
    count_finished(cancelled ? FinishReason::cancelled : FinishReason::timeout);
    if (cancelled) {
      job->finish(FinishReason::cancelled, 0, 0);
    } else {
      job->finish(FinishReason::timeout, 0, 0,
                  fmt::format("the request waited more than {} s for a free slot (--timeout)", options_.timeout_s));
    }
  }
  size_t next_free = 0;
  for (auto& job : starting) {
    while (slots_[next_free].job) ++next_free;
    start(slots_[next_free], std::move(job));
  }
}

void Scheduler::start(Slot& slot, std::shared_ptr<Job> job) {
  const GenerationRequest& req = job->request();
  const int n = static_cast<int>(req.prompt.size());
  if (n == 0 || n >= n_ctx_) {  // the HTTP layer checks this; never trust it with a slot
    count_finished(FinishReason::error);
    job->finish(FinishReason::error, n, 0, fmt::format("the prompt has {} tokens; it must have 1 to {}", n, n_ctx_ - 1));
    return;
  }
  try {
    slot.sampler = std::make_unique<Sampler>(req.sampling, vocab_);
    for (int32_t t : req.prompt) slot.sampler->accept(t);  // penalties see the prompt, as Session does
  } catch (const std::exception& e) {
    count_finished(FinishReason::error);
    job->finish(FinishReason::error, n, 0, std::string("invalid sampling parameters: ") + e.what());
    return;
  }
  slot.decoder = std::make_unique<StreamDecoder>(model_.tokenizer());
  slot.decoder->push(req.prompt.back());  // so the first reply token keeps or drops its space right
  slot.stops = std::make_unique<StopMatcher>(req.stop);
  slot.seq = next_seq_++;
  slot.n_prompt = n;
  slot.n_fed = 0;
  slot.next = -1;
  slot.prev = req.prompt.back();
  slot.generated = 0;
  slot.job = std::move(job);
  peak_busy_.store(std::max(peak_busy_.load(), busy_.fetch_add(1) + 1));  // written by this thread only
  admitted_.fetch_add(1);
  prompt_tokens_.fetch_add(static_cast<uint64_t>(n));
}

void Scheduler::retire_cancelled() {
  const auto now = Clock::now();
  for (Slot& s : slots_) {
    if (!s.job) continue;
    if (s.job->cancelled()) {
      finish(s, FinishReason::cancelled);
    } else if (now >= s.job->deadline) {
      finish(s, FinishReason::timeout, fmt::format("the request ran longer than {} s (--timeout)", options_.timeout_s));
    }
  }
}

void Scheduler::build_batch() {
  tokens_.clear();
  rows_.clear();
  logit_rows_.clear();
  logit_slots_.clear();
  // One decode row per generating slot.
  std::vector<int> prefilling;
  for (int i = 0; i < static_cast<int>(slots_.size()); ++i) {
    Slot& s = slots_[static_cast<size_t>(i)];
    if (!s.job) continue;
    if (s.next < 0) {
      prefilling.push_back(i);
      continue;
    }
    tokens_.push_back(s.next);
    rows_.push_back({i, s.n_fed++});
    logit_rows_.push_back(static_cast<int32_t>(rows_.size() - 1));
    logit_slots_.push_back(i);
  }
  // Then prompt rows, oldest request first, within this step's budget.
  std::sort(prefilling.begin(), prefilling.end(), [&](int a, int b) { return slots_[size_t(a)].seq < slots_[size_t(b)].seq; });
  int budget = options_.prefill_rows;
  for (int i : prefilling) {
    if (budget == 0) break;
    Slot& s = slots_[static_cast<size_t>(i)];
    const std::vector<int32_t>& prompt = s.job->request().prompt;
    const int take = std::min(budget, s.n_prompt - s.n_fed);
    for (int k = 0; k < take; ++k) {
      tokens_.push_back(prompt[static_cast<size_t>(s.n_fed)]);
      rows_.push_back({i, s.n_fed++});
    }
    budget -= take;
    if (s.n_fed == s.n_prompt) {  // the prompt is in: its last row gives the first token
      logit_rows_.push_back(static_cast<int32_t>(rows_.size() - 1));
      logit_slots_.push_back(i);
    }
  }
}

void Scheduler::step() {
  build_batch();
  if (rows_.empty()) return;
  const auto t0 = Clock::now();
  top_k_ = 0;
  bool all_top = !logit_slots_.empty();
  for (int i : logit_slots_) {
    const int k = slots_[static_cast<size_t>(i)].sampler->candidates_needed(kernels::Backend::kMaxTopK);
    all_top = all_top && k > 0;
    top_k_ = std::max(top_k_, k);
  }
  if (!all_top) top_k_ = 0;
  try {
    if (top_k_ > 0) {
      top_ids_.resize(logit_rows_.size() * static_cast<size_t>(top_k_));
      top_logits_.resize(top_ids_.size());
      forward_.run_top_k(*cache_, tokens_, rows_, logit_rows_, top_k_, top_ids_.data(), top_logits_.data());
    } else {
      forward_.run(*cache_, tokens_, rows_, logit_rows_, logits_.data());
    }
  } catch (const std::exception& e) {
    fail_batch(e.what());
    return;
  }
  const auto t1 = Clock::now();
  steps_.fetch_add(1);
  batch_rows_.fetch_add(rows_.size());
  const uint64_t before = generated_tokens_.load();
  sampling_pool_.run(static_cast<int>(logit_slots_.size()), [this](int j) { sample(static_cast<size_t>(j)); });
  count_generated(generated_tokens_.load() - before);
  // Wake the consumers once, now that every slot has its token (finished jobs woke already).
  for (int i : logit_slots_)
    if (const auto& job = slots_[static_cast<size_t>(i)].job) job->publish();
  const auto t2 = Clock::now();
  forward_ns_.fetch_add(static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count()));
  sample_ns_.fetch_add(static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(t2 - t1).count()));
}

// Samples logit row j for its slot. Runs on a sampling thread: touches only that slot, its
// job and atomic counters.
void Scheduler::sample(size_t j) {
  Slot& s = slots_[static_cast<size_t>(logit_slots_[j])];
  try {
    int32_t id;
    if (top_k_ > 0) {  // the row's k most likely first: a prefix of the batch's top_k_
      const auto k = static_cast<size_t>(s.sampler->candidates_needed(kernels::Backend::kMaxTopK));
      const size_t at = j * static_cast<size_t>(top_k_);
      id = s.sampler->sample_top(std::span(top_ids_).subspan(at, k), std::span(top_logits_).subspan(at, k));
    } else {
      id = s.sampler->sample(std::span(logits_).subspan(j * static_cast<size_t>(vocab_), static_cast<size_t>(vocab_)));
    }
    on_sampled(s, id);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sbits-server: internal error while sampling: %s\n", e.what());
    finish(s, FinishReason::error, std::string("internal error while sampling: ") + e.what());
  }
}

void Scheduler::fail_batch(const std::string& what) {
  std::fprintf(stderr, "sbits-server: internal error in the forward pass (%zu rows): %s\n", rows_.size(), what.c_str());
  for (const kernels::RowInfo& r : rows_) {
    Slot& s = slots_[static_cast<size_t>(r.slot)];
    if (s.job) finish(s, FinishReason::error, "internal error in the forward pass: " + what);
  }
}

void Scheduler::on_sampled(Slot& slot, int32_t id) {
  const GenerationRequest& req = slot.job->request();
  const bool want_logprobs = req.logprobs >= 0;
  TokenRecord rec;
  if (want_logprobs) rec = {id, slot.prev, slot.sampler->last_logprob(), slot.sampler->last_top_logprobs(req.logprobs)};
  slot.sampler->accept(id);
  if (id == model_.tokenizer().eos_id() ||
      std::find(req.stop_tokens.begin(), req.stop_tokens.end(), id) != req.stop_tokens.end()) {
    finish(slot, FinishReason::stop);
    return;
  }
  ++slot.generated;
  generated_tokens_.fetch_add(1);
  const std::string text = slot.stops->push(slot.decoder->push(id));
  slot.job->emit(text, want_logprobs ? &rec : nullptr);
  slot.prev = id;
  if (slot.stops->stopped()) {
    finish(slot, FinishReason::stop);
  } else if ((req.max_tokens > 0 && slot.generated >= req.max_tokens) || slot.n_fed >= n_ctx_) {
    finish(slot, FinishReason::length);  // max_tokens, or no position left to feed the token at
  } else {
    slot.next = id;
  }
}

void Scheduler::finish(Slot& slot, FinishReason reason, std::string error) {
  if (reason == FinishReason::stop || reason == FinishReason::length) {
    // Bytes of an unfinished character, and text held back as a possible stop string.
    std::string rest = slot.stops->push(slot.decoder->flush());
    rest += slot.stops->flush();
    slot.job->emit(rest, nullptr);
  }
  // Free the slot and count before the client hears of the end, so that what it reads from
  // /metrics afterwards already includes this request.
  std::shared_ptr<Job> job = std::move(slot.job);
  slot.sampler.reset();
  slot.decoder.reset();
  slot.stops.reset();
  slot.next = -1;
  busy_.fetch_sub(1);
  count_finished(reason);
  job->finish(reason, slot.n_prompt, slot.generated, std::move(error));
}

void Scheduler::count_finished(FinishReason reason) {
  switch (reason) {
    case FinishReason::cancelled: cancelled_.fetch_add(1); break;
    case FinishReason::timeout: timed_out_.fetch_add(1); break;
    case FinishReason::error: failed_.fetch_add(1); break;
    default: completed_.fetch_add(1); break;
  }
}

void Scheduler::count_generated(uint64_t n) {
  const auto now = Clock::now();
  std::lock_guard<std::mutex> lock(mu_);
  if (n > 0) rate_window_.emplace_back(now, n);
  while (!rate_window_.empty() && rate_window_.front().first < now - kRateWindow) rate_window_.pop_front();
}

}  // namespace sbits::server
