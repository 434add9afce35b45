#include "server/job.h"

namespace sbits::server {

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::none: return "none";
    case FinishReason::stop: return "stop";
    case FinishReason::length: return "length";
    case FinishReason::cancelled: return "cancelled";
    case FinishReason::timeout: return "timeout";
    case FinishReason::error: return "error";
  }
  return "error";
}

JobOutput Job::take(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, timeout, [&] { return pending_.finished || !pending_.text.empty() || !pending_.tokens.empty(); });
  JobOutput out;
  out.text.swap(pending_.text);
  out.tokens.swap(pending_.tokens);
  out.finished = pending_.finished;
  out.reason = pending_.reason;
  out.prompt_tokens = pending_.prompt_tokens;
  out.completion_tokens = pending_.completion_tokens;
  out.error = pending_.error;
  return out;
}

void Job::emit(std::string_view text, const TokenRecord* token) {
  if (text.empty() && !token) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (pending_.finished) return;
    pending_.text.append(text);
    if (token) pending_.tokens.push_back(*token);
  }
}

void Job::finish(FinishReason reason, int prompt_tokens, int completion_tokens, std::string error) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (pending_.finished) return;
    pending_.finished = true;
    pending_.reason = reason;
    pending_.prompt_tokens = prompt_tokens;
    pending_.completion_tokens = completion_tokens;
    pending_.error = std::move(error);
  }
  cv_.notify_all();
}

bool Job::finished() const {
  std::lock_guard<std::mutex> lock(mu_);
  return pending_.finished;
}

}  // namespace sbits::server
