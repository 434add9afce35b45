// Counters for GET /metrics, in Prometheus' text exposition format (version 0.0.4).
//
// Threading: HttpCounters::count may be called from every HTTP worker at once.
#pragma once

#include <map>
#include <mutex>
#include <string>
#include <utility>

#include "server/scheduler.h"

namespace sbits::server {

// Requests answered, by route and status code.
class HttpCounters {
 public:
  void count(const std::string& path, int status);
  std::map<std::pair<std::string, int>, uint64_t> snapshot() const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, uint64_t> counts_;
};

// The whole /metrics page. `scheduler` is null while the model is loading.
std::string prometheus_text(const SchedulerStats* scheduler, const HttpCounters& http);

}  // namespace sbits::server
