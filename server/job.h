// One generation request as it travels between an HTTP worker (the consumer) and the
// scheduler thread (the producer).
//
// Threading: take() and cancel() are called by the HTTP side, emit() and finish() by the
// scheduler; all of them lock the job's own mutex only, so a slow client never holds up the
// scheduler. Output that the consumer has not taken yet is coalesced (text appended, token
// records queued), so the memory a job holds is bounded by its own reply.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/text/sampler.h"

namespace sbits::server {

struct GenerationRequest {
  std::vector<int32_t> prompt;           // at least one token (BOS for an empty prompt)
  int max_tokens = -1;                   // -1: until the context is full
  SamplerParams sampling;
  std::vector<std::string> stop;         // stop strings: generation ends there, the text is not emitted
  std::vector<int32_t> stop_tokens;      // control tokens that end the reply, besides EOS
  int logprobs = -1;                     // -1: none; else alternatives per token (0..20)
};

enum class FinishReason { none, stop, length, cancelled, timeout, error };
// OpenAI's finish_reason for the reasons a reply can end with ("stop", "length"), else the name.
const char* finish_reason_name(FinishReason r);

// One generated token, for logprobs.
struct TokenRecord {
  int32_t id = 0;
  int32_t prev = -1;  // the token before it (its text depends on it: leading spaces)
  float logprob = 0;
  std::vector<std::pair<int32_t, float>> top;  // the most likely alternatives, best first
};

// What take() hands over: everything produced since the last take().
struct JobOutput {
  std::string text;
  std::vector<TokenRecord> tokens;
  bool finished = false;
  // Valid once finished:
  FinishReason reason = FinishReason::none;
  int prompt_tokens = 0;
  int completion_tokens = 0;
  std::string error;  // for FinishReason::error and ::timeout
};

class Job {
 public:
  explicit Job(GenerationRequest request) : request_(std::move(request)) {}

  const GenerationRequest& request() const { return request_; }

  // Consumer: waits until output is there, the job finished, or `timeout` passed.
  JobOutput take(std::chrono::milliseconds timeout);
  // Consumer: asks the scheduler to stop this job; it frees the slot at its next step.
  void cancel() { cancelled_.store(true); }
  bool cancelled() const { return cancelled_.load(); }

  // Producer side. emit() only stores the output; publish() wakes the consumer. The
  // scheduler publishes once per step, after every slot has sampled, so that waking 16
  // HTTP threads does not preempt it in the middle of a step.
  void emit(std::string_view text, const TokenRecord* token);
  void publish() { cv_.notify_all(); }
  void finish(FinishReason reason, int prompt_tokens, int completion_tokens, std::string error = {});
  bool finished() const;

  // Set by the scheduler when queued (for the per-request timeout).
  std::chrono::steady_clock::time_point deadline;

 private:
  const GenerationRequest request_;
  std::atomic<bool> cancelled_{false};
  mutable std::mutex mu_;
  std::condition_variable cv_;
  JobOutput pending_;
};

}  // namespace sbits::server
