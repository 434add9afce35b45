#include "server/metrics.h"

#include <fmt/format.h>

namespace sbits::server {
namespace {

void metric(std::string& out, const char* name, const char* type, const char* help, double value) {
  out += fmt::format("# HELP {} {}\n# TYPE {} {}\n{} {}\n", name, help, name, type, name, value);
}

void metric(std::string& out, const char* name, const char* type, const char* help, uint64_t value) {
  out += fmt::format("# HELP {} {}\n# TYPE {} {}\n{} {}\n", name, help, name, type, name, value);
}

// Label values are route paths we registered, but escape anyway as the format requires.
std::string escape_label(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

}  // namespace

void HttpCounters::count(const std::string& path, int status) {
  std::lock_guard<std::mutex> lock(mu_);
  ++counts_[{path, status}];
}

std::map<std::pair<std::string, int>, uint64_t> HttpCounters::snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  return counts_;
}

std::string prometheus_text(const SchedulerStats* s, const HttpCounters& http) {
  std::string out;
  out += "# HELP sbits_http_requests_total HTTP requests answered, by route and status.\n"
         "# TYPE sbits_http_requests_total counter\n";
  for (const auto& [key, n] : http.snapshot())
    out += fmt::format("sbits_http_requests_total{{path=\"{}\",status=\"{}\"}} {}\n", escape_label(key.first), key.second, n);
  metric(out, "sbits_model_loaded", "gauge", "1 once the model is loaded and requests are served.", uint64_t(s ? 1 : 0));
  if (!s) return out;
  metric(out, "sbits_requests_admitted_total", "counter", "Generation requests that got a slot.", s->admitted);
  metric(out, "sbits_requests_completed_total", "counter", "Generation requests that ended normally (stop or length).", s->completed);
  metric(out, "sbits_requests_cancelled_total", "counter", "Generation requests cancelled (client gone, or shutdown).", s->cancelled);
  metric(out, "sbits_requests_timed_out_total", "counter", "Generation requests stopped by --timeout.", s->timed_out);
  metric(out, "sbits_requests_failed_total", "counter", "Generation requests ended by an internal error.", s->failed);
  metric(out, "sbits_requests_rejected_total", "counter", "Generation requests refused because the queue was full.", s->rejected);
  metric(out, "sbits_prompt_tokens_total", "counter", "Prompt tokens processed (tokens in).", s->prompt_tokens);
  metric(out, "sbits_generated_tokens_total", "counter", "Tokens generated (tokens out).", s->generated_tokens);
  metric(out, "sbits_batch_steps_total", "counter", "Batched forward passes run.", s->steps);
  metric(out, "sbits_batch_rows_total", "counter", "Rows (tokens) run in those passes.", s->batch_rows);
  metric(out, "sbits_forward_seconds_total", "counter", "Time spent in batched forward passes.", s->forward_seconds);
  metric(out, "sbits_sampling_seconds_total", "counter", "Time spent sampling and detokenizing after them.", s->sample_seconds);
  metric(out, "sbits_queue_length", "gauge", "Requests waiting for a slot.", uint64_t(s->queue_length));
  metric(out, "sbits_slots_busy", "gauge", "Slots generating or prefilling.", uint64_t(s->slots_busy));
  metric(out, "sbits_slots_busy_peak", "gauge", "The most slots busy at once since start.", uint64_t(s->peak_slots_busy));
  metric(out, "sbits_slots_total", "gauge", "Slots (--parallel).", uint64_t(s->slots_total));
  metric(out, "sbits_tokens_per_second", "gauge", "Generated tokens per second over the last 5 seconds.", s->tokens_per_second);
  return out;
}

}  // namespace sbits::server
