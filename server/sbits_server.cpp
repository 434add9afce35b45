// sbits-server: an OpenAI-compatible HTTP API over one model, with continuous batching.
//
// Stderr carries the log: "sbits-server: listening on http://HOST:PORT" as soon as the port is
// bound (tests and scripts read the port from it when --port 0 asks for any free one), then a
// line when the model is loaded. SIGINT/SIGTERM end every request and exit with status 0.
#include <fmt/format.h>
#include <pthread.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "engine/tools/cli.h"
#include "server/http_server.h"
#include "server/server_app.h"

namespace {

using namespace sbits;
using namespace sbits::server;

const char* kUsage = R"(usage: sbits-server MODEL.sbits [options]

An OpenAI-compatible HTTP API: /v1/chat/completions, /v1/completions, /v1/models, /tokenize,
/detokenize, /health, /metrics. Requests share the model through continuous batching.

  --host ADDR            address to listen on (default 127.0.0.1: this machine only)
  --port N               port (default 8080; 0 = any free port, printed on stderr)
  --api-key KEY          require 'Authorization: Bearer KEY' (all routes but /health)
  --api-key-file F       the same, with the key read from the first line of F
  --parallel N           requests generated at once, one KV-cache slot each (default 4)
  --ctx N                context positions per slot (default: the model's, at most 4096)
  --max-queue N          requests waiting for a slot; beyond, 503 + Retry-After (default 64)
  --timeout S            seconds a request may take, queue included (default 600; 0 = none)
  --batch N              prompt tokens prefilled per step, shared by new requests (default 64)
  --cors-origin O        send Access-Control-Allow-Origin: O and answer preflight requests
  --max-body BYTES       largest request body; beyond, 413 (default 8388608)
  --alias NAME           the model's id in the API (default: the file name without .sbits)
  --chat-template T      llama2, chatml, zephyr, plain, or a template file (default: the model's)
  --kv-type f16|f32      KV cache element type (default f16)
  --backend NAME         cpu, cuda, vulkan or auto (default auto)
  --threads N            CPU threads for the forward pass and sampling (default: all cores)
  -h, --help             this help
)";

struct Options {
  HttpOptions http;
  AppOptions app;
};

std::string read_key_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw cli::UsageError("cannot read the API key file '" + path + "'");
  std::string key;
  std::getline(in, key);
  while (!key.empty() && std::isspace(static_cast<unsigned char>(key.back()))) key.pop_back();
  if (key.empty()) throw cli::UsageError("the API key file '" + path + "' has an empty first line");
  return key;
}

std::string read_template(const std::string& spec) {
  // A path to a custom template file, else a built-in name (checked at load).
  if (spec.find('/') == std::string::npos && !std::filesystem::exists(spec)) return spec;
  std::ifstream in(spec);
  if (!in) throw cli::UsageError("cannot read the chat template file '" + spec + "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void parse_option(std::string_view a, cli::Args& args, Options& o) {
  SchedulerOptions& s = o.app.scheduler;
  if (a == "--host") o.http.host = args.value(a);
  else if (a == "--port") o.http.port = cli::parse_in_range<int>(a, args.value(a), 0, 65535);
  else if (a == "--api-key") o.http.api_key = args.value(a);
  else if (a == "--api-key-file") o.http.api_key = read_key_file(args.value(a));
  else if (a == "--parallel") s.n_slots = cli::parse_in_range<int>(a, args.value(a), 1, 256);
  else if (a == "--ctx") s.n_ctx = cli::parse_in_range<int>(a, args.value(a), 1, 1 << 24);
  else if (a == "--max-queue") s.max_queue = cli::parse_in_range<int>(a, args.value(a), 0, 100000);
  else if (a == "--timeout") s.timeout_s = cli::parse_in_range<double>(a, args.value(a), 0.0, 1e7);
  else if (a == "--batch") s.prefill_rows = cli::parse_in_range<int>(a, args.value(a), 1, 4096);
  else if (a == "--cors-origin") o.http.cors_origin = args.value(a);
  else if (a == "--max-body") o.http.max_body_bytes = cli::parse_in_range<size_t>(a, args.value(a), 1024, size_t(1) << 34);
  else if (a == "--alias") o.app.model_id = args.value(a);
  else if (a == "--chat-template") o.app.chat_template = read_template(args.value(a));
  else if (a == "--backend") o.app.backend = args.value(a);
  else if (a == "--threads") o.app.threads = cli::parse_in_range<int>(a, args.value(a), 1, 1024);
  else if (a == "--kv-type") {
    const std::string v = args.value(a);
    if (v != "f16" && v != "f32") throw cli::UsageError("option --kv-type expects f16 or f32, got '" + v + "'");
    s.kv_type = v == "f16" ? kernels::KvType::f16 : kernels::KvType::f32;
  } else {
    throw cli::UsageError(fmt::format("unknown option '{}'", a));
  }
}

Options parse_args(int argc, char** argv) {
  Options o;
  cli::Args args(argc, argv);
  while (!args.done()) {
    const std::string_view a = args.next();
    if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (a.size() > 1 && a[0] == '-') parse_option(a, args, o);
    else if (o.app.model_path.empty()) o.app.model_path = a;
    else throw cli::UsageError(fmt::format("unexpected argument '{}' (the model is '{}')", a, o.app.model_path));
  }
  if (o.app.model_path.empty()) throw cli::UsageError("no model given");
  if (o.app.model_id.empty()) o.app.model_id = std::filesystem::path(o.app.model_path).stem().string();
  // --threads caps the sampling threads too: it is how a user limits the cores we take.
  if (o.app.threads > 0) o.app.scheduler.sampling_threads = std::min(o.app.threads, o.app.scheduler.n_slots);
  // Every request holds a worker thread while it runs or waits, so there must be one per slot
  // and queue place, plus a few for /health and /metrics.
  o.http.worker_threads = std::min(1024, o.app.scheduler.n_slots + o.app.scheduler.max_queue + 8);
  return o;
}

int serve(const Options& o, const sigset_t& signals) {
  App app(o.app);
  HttpServer http(o.http);
  app.install(http);
  std::string error;
  const int port = http.bind(&error);
  if (port < 0) {
    std::fprintf(stderr, "sbits-server: error: %s\n", error.c_str());
    return 1;
  }
  std::fprintf(stderr, "sbits-server: listening on http://%s:%d%s\n", o.http.host.c_str(), port,
               o.http.api_key.empty() ? "" : " (API key required)");
  std::thread server_thread([&] { http.run(); });
  bool load_failed = false;
  std::thread loader([&] {
    try {
      app.load();
      std::fprintf(stderr, "sbits-server: model %s loaded; serving %d slots\n", o.app.model_path.c_str(),
                   o.app.scheduler.n_slots);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "sbits-server: error: %s\n", e.what());
      load_failed = true;
      kill(getpid(), SIGTERM);  // wakes the sigwait below
    }
  });
  int sig = 0;
  sigwait(&signals, &sig);
  loader.join();
  if (!load_failed) std::fprintf(stderr, "sbits-server: signal %d, shutting down\n", sig);
  app.shutdown();  // streams end first, so the workers are free when the transport stops
  http.stop();
  server_thread.join();
  return load_failed ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  try {
    o = parse_args(argc, argv);
  } catch (const cli::UsageError& e) {
    std::fprintf(stderr, "sbits-server: error: %s\n\n%s", e.what(), kUsage);
    return 2;
  }
  // Signals are taken synchronously by sigwait in serve(): blocked here, before any thread
  // starts, so every thread inherits the mask. A client that hangs up must not kill us.
  std::signal(SIGPIPE, SIG_IGN);
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  try {
    return serve(o, signals);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sbits-server: error: %s\n", e.what());
    return 1;
  }
}
