// The application layer: the routes of sbits-server, mapping OpenAI requests onto the
// scheduler and results back onto OpenAI responses.
//
// Life cycle: construct, install() the routes on an HttpServer, start serving (every route but
// /health answers 503 "loading" until the model is in), then load() (slow: reads the model),
// and shutdown() before the HttpServer stops, so streams in flight end promptly.
// Threading: handlers run on HTTP worker threads; the engine is published once, atomically,
// by load(), and is immutable afterwards except through the scheduler's thread-safe interface.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <string>

#include "server/http_server.h"
#include "server/metrics.h"
#include "server/openai_request.h"
#include "server/scheduler.h"

namespace sbits::server {

struct AppOptions {
  std::string model_path;
  std::string model_id;       // the name /v1/models lists and requests may give as "model"
  std::string backend = "auto";
  int threads = 0;            // CPU threads; 0: all cores
  std::string chat_template;  // "": the model's own, else a built-in name or template text
  SchedulerOptions scheduler;
};

class App {
 public:
  explicit App(AppOptions options);
  ~App();
  App(const App&) = delete;
  App& operator=(const App&) = delete;

  void install(HttpServer& http);
  // Loads the backend, the model and the template and starts the scheduler. Throws
  // (EngineError, FormatError, std::invalid_argument) with a message naming what failed.
  void load();
  // Ends every job (streams get an error event and [DONE]); requests after this get 503.
  void shutdown();

  struct Engine;

 private:
  HttpHandler counted(const std::string& path, HttpHandler handler);
  const Engine* engine() const { return ready_.load(std::memory_order_acquire) ? engine_.get() : nullptr; }

  HttpResponse health(const HttpRequest& req) const;
  HttpResponse models(const HttpRequest& req) const;
  HttpResponse metrics(const HttpRequest& req) const;
  HttpResponse tokenize(const HttpRequest& req) const;
  HttpResponse detokenize(const HttpRequest& req) const;
  HttpResponse completions(const HttpRequest& req, Endpoint endpoint) const;

  AppOptions options_;
  std::unique_ptr<Engine> engine_;
  std::atomic<bool> ready_{false};
  std::atomic<bool> stopping_{false};
  HttpCounters http_counts_;
  int64_t created_ = 0;  // unix time of the load, for /v1/models
};

}  // namespace sbits::server
