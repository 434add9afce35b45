// bench_server: aggregate generation throughput of sbits-server under 1, 4, 8 and 16
// concurrent streams, measured like a client sees it (loopback HTTP, SSE, usage counts).
//
// Not a test: run by hand; writes bench/results/server-<model>-<machine>.{json,md}.
//   bench_server MODEL.sbits [--streams 1,4,8,16] [--requests N] [--max-tokens N] [--ctx N]
//                [--threads N] [--backend NAME] [--out DIR] [--server PATH] [--time-limit S]
// Each of the C streams sends N streaming requests one after another (different prompts,
// seeded sampling at temperature 0.8); tokens are the server's own completion_tokens counts.
// Bounded: every request has max_tokens, every read a timeout, and the whole run a time limit.
#include <fmt/format.h>
#include <httplib.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>
#include <vector>

extern char** environ;

namespace {

using json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string model;
  std::string server = SBITS_SERVER_PATH;
  std::vector<int> streams = {1, 4, 8, 16};
  int requests = 4;
  int max_tokens = 128;
  int ctx = 512;
  int threads = 0;
  std::string backend;  // passed to the server's --backend when set
  std::string out = "bench/results";
  double time_limit_s = 600;
};

struct Level {
  int streams = 0;
  int requests = 0, failed = 0;
  long tokens = 0;
  double seconds = 0, ttft_ms = 0;
  double forward_s = 0, sampling_s = 0, steps = 0;  // the server's own accounting for this level
};

// One value from the server's /metrics.
double server_metric(int port, const std::string& name) {
  httplib::Client c("127.0.0.1", port);
  auto res = c.Get("/metrics");
  if (!res || res->status != 200) return 0;
  const size_t p = res->body.find("\n" + name + " ");
  return p == std::string::npos ? 0 : std::atof(res->body.c_str() + p + name.size() + 2);
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string machine_name() {
  std::istringstream in(slurp("/proc/cpuinfo"));
  std::string line, cpu = "unknown CPU";
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) {
      cpu = line.substr(line.find(':') + 2);
      break;
    }
  return fmt::format("{}, {} threads", cpu, std::thread::hardware_concurrency());
}

// "NVIDIA H200 (sm_90, 132 SMs)" -> "NVIDIA-H200-sm-90-132-SMs", for file names.
std::string slug(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (std::isalnum(static_cast<unsigned char>(c))) out += c;
    else if (!out.empty() && out.back() != '-') out += '-';
  }
  while (!out.empty() && out.back() == '-') out.pop_back();
  return out;
}

// The running server: spawned with --port 0, port read back from its log.
struct Server {
  pid_t pid = -1;
  int port = -1;
  ~Server() {
    if (pid > 0) {
      kill(pid, SIGTERM);
      waitpid(pid, nullptr, 0);
    }
  }
};

bool start_server(const Options& o, int parallel, Server& s, const std::string& log) {
  std::vector<std::string> args = {o.server, o.model, "--host", "127.0.0.1", "--port", "0", "--parallel",
                                   std::to_string(parallel), "--ctx", std::to_string(o.ctx), "--max-queue", "64"};
  if (o.threads > 0) args.insert(args.end(), {"--threads", std::to_string(o.threads)});
  if (!o.backend.empty()) args.insert(args.end(), {"--backend", o.backend});
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 2, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  const int rc = posix_spawn(&s.pid, o.server.c_str(), &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return false;
  const auto deadline = Clock::now() + std::chrono::seconds(120);
  while (Clock::now() < deadline) {
    const std::string text = slurp(log);
    const size_t p = text.find("127.0.0.1:");
    if (p != std::string::npos) {
      s.port = std::atoi(text.c_str() + p + 10);
      httplib::Client c("127.0.0.1", s.port);
      auto res = c.Get("/health");
      if (res && res->status == 200) return true;
    }
    if (waitpid(s.pid, nullptr, WNOHANG) == s.pid) {
      s.pid = -1;
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

// One streaming request; returns completion tokens (-1 on failure) and the time to first text.
long stream_once(int port, const json& body, double* ttft_ms) {
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(120, 0);
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/completions";
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");
  std::string buf;
  long tokens = -1;
  bool first = true;
  const auto t0 = Clock::now();
  req.content_receiver = [&](const char* d, size_t n, uint64_t, uint64_t) {
    if (first) {
      *ttft_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
      first = false;
    }
    buf.append(d, n);
    for (size_t end; (end = buf.find("\n\n")) != std::string::npos; buf.erase(0, end + 2)) {
      const std::string ev = buf.substr(0, end);
      if (ev.rfind("data: {", 0) != 0) continue;
      json j = json::parse(ev.substr(6), nullptr, false);
      if (j.is_object() && j.contains("usage") && j["usage"].is_object()) tokens = j["usage"]["completion_tokens"];
    }
    return true;
  };
  auto res = c.send(req);
  if (!res || res->status != 200) {
    std::fprintf(stderr, "bench_server: request failed: %s\n",
                 res ? fmt::format("HTTP {} {}", res->status, res->body).c_str() : httplib::to_string(res.error()).c_str());
    return -1;
  }
  if (tokens < 0) std::fprintf(stderr, "bench_server: no usage in the stream: %s\n", buf.c_str());
  return tokens;
}

Level run_level(const Options& o, int port, int streams, const Clock::time_point deadline) {
  static const char* prompts[] = {"Once upon a time", "The little dog", "In the morning, Lily", "Tom and Sam",
                                  "The kernel", "A big red ball", "The sun was hot", "One day a bird"};
  Level lv;
  lv.streams = streams;
  std::atomic<long> tokens{0};
  std::atomic<int> done{0}, failed{0};
  std::vector<double> ttft(static_cast<size_t>(streams) * o.requests, 0.0);
  const double f0 = server_metric(port, "sbits_forward_seconds_total");
  const double s0 = server_metric(port, "sbits_sampling_seconds_total");
  const double n0 = server_metric(port, "sbits_batch_steps_total");
  const auto t0 = Clock::now();
  std::vector<std::thread> threads;
  for (int s = 0; s < streams; ++s) {
    threads.emplace_back([&, s] {
      for (int r = 0; r < o.requests && Clock::now() < deadline; ++r) {
        const int k = s * o.requests + r;
        json body = {{"prompt", prompts[k % 8]}, {"max_tokens", o.max_tokens}, {"temperature", 0.8},
                     {"seed", k},  {"stream", true}, {"stream_options", {{"include_usage", true}}}};
        const long n = stream_once(port, body, &ttft[static_cast<size_t>(k)]);
        if (n < 0) failed.fetch_add(1);
        else tokens.fetch_add(n);
        done.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  lv.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  lv.forward_s = server_metric(port, "sbits_forward_seconds_total") - f0;
  lv.sampling_s = server_metric(port, "sbits_sampling_seconds_total") - s0;
  lv.steps = server_metric(port, "sbits_batch_steps_total") - n0;
  lv.tokens = tokens.load();
  lv.requests = done.load();
  lv.failed = failed.load();
  double sum = 0;
  for (double v : ttft) sum += v;
  lv.ttft_ms = lv.requests ? sum / lv.requests : 0;
  return lv;
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw std::runtime_error(a + " needs a value");
      return argv[++i];
    };
    if (a == "--streams") {
      o.streams.clear();
      std::stringstream ss(next());
      for (std::string x; std::getline(ss, x, ',');) o.streams.push_back(std::stoi(x));
    } else if (a == "--requests") o.requests = std::stoi(next());
    else if (a == "--max-tokens") o.max_tokens = std::stoi(next());
    else if (a == "--ctx") o.ctx = std::stoi(next());
    else if (a == "--threads") o.threads = std::stoi(next());
    else if (a == "--backend") o.backend = next();
    else if (a == "--out") o.out = next();
    else if (a == "--server") o.server = next();
    else if (a == "--time-limit") o.time_limit_s = std::stod(next());
    else if (!a.empty() && a[0] != '-' && o.model.empty()) o.model = a;
    else throw std::runtime_error("unknown argument '" + a + "'");
  }
  if (o.model.empty()) throw std::runtime_error("usage: bench_server MODEL.sbits [--streams 1,4,8,16] [--requests N] ...");
  return o;
}

void write_results(const Options& o, const std::vector<Level>& levels, const std::string& backend) {
  const std::string machine = machine_name();
  const std::string model = std::filesystem::path(o.model).stem().string();
  const double base = levels.empty() || levels[0].seconds <= 0 ? 0 : levels[0].tokens / levels[0].seconds;
  std::string load = slurp("/proc/loadavg");
  if (!load.empty() && load.back() == '\n') load.pop_back();
  json j = {{"benchmark", "sbits-server aggregate streaming throughput"},
            {"machine", machine},
            {"load_average_at_end", load},  // other work on the machine skews the numbers
            {"backend", backend},
            {"model", model},
            {"max_tokens", o.max_tokens},
            {"requests_per_stream", o.requests},
            {"ctx", o.ctx},
            {"levels", json::array()}};
  std::string md = fmt::format("# sbits-server throughput: {}\n\nMachine: {} (load average {})  \nBackend: {}  \n"
                               "Each stream: {} streaming requests of up to {} tokens (temperature 0.8), loopback HTTP.\n\n"
                               "| streams | requests | tokens | seconds | aggregate tok/s | per stream tok/s | "
                               "vs 1 stream | mean TTFT ms | forward s | sampling s | steps |\n"
                               "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
                               model, machine, load, backend, o.requests, o.max_tokens);
  for (const Level& l : levels) {
    const double agg = l.seconds > 0 ? l.tokens / l.seconds : 0;
    j["levels"].push_back({{"streams", l.streams}, {"requests", l.requests}, {"failed", l.failed}, {"tokens", l.tokens},
                           {"seconds", l.seconds}, {"aggregate_tokens_per_s", agg},
                           {"per_stream_tokens_per_s", agg / l.streams}, {"speedup_vs_1", base > 0 ? agg / base : 0},
                           {"mean_ttft_ms", l.ttft_ms}, {"server_forward_s", l.forward_s},
                           {"server_sampling_s", l.sampling_s}, {"server_steps", l.steps}});
    md += fmt::format("| {} | {} | {} | {:.2f} | {:.1f} | {:.1f} | {:.2f}x | {:.0f} | {:.2f} | {:.2f} | {:.0f} |\n",
                      l.streams, l.requests, l.tokens, l.seconds, agg, agg / l.streams, base > 0 ? agg / base : 0,
                      l.ttft_ms, l.forward_s, l.sampling_s, l.steps);
  }
  std::filesystem::create_directories(o.out);
  // Named by the backend's own description (CPU model and threads, or the GPU).
  const std::string stem = fmt::format("{}/server-{}-{}", o.out, slug(model), slug(backend));
  std::ofstream(stem + ".json") << j.dump(2) << "\n";
  std::ofstream(stem + ".md") << md;
  std::fputs(md.c_str(), stdout);
  std::printf("\nwrote %s.json and %s.md\n", stem.c_str(), stem.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  try {
    o = parse(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_server: %s\n", e.what());
    return 2;
  }
  std::signal(SIGPIPE, SIG_IGN);
  int parallel = 1;
  for (int s : o.streams) parallel = std::max(parallel, s);
  const std::string log = (std::filesystem::temp_directory_path() / fmt::format("bench_server_{}.log", getpid())).string();
  Server server;
  if (!start_server(o, parallel, server, log)) {
    std::fprintf(stderr, "bench_server: the server did not start:\n%s\n", slurp(log).c_str());
    return 1;
  }
  httplib::Client c("127.0.0.1", server.port);
  auto models = c.Get("/v1/models");
  std::string backend = "?";
  if (models && models->status == 200) backend = json::parse(models->body)["data"][0]["meta"]["backend"];
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.time_limit_s));
  double warm = 0;
  stream_once(server.port, {{"prompt", "Hello"}, {"max_tokens", 8}, {"stream", true}, {"stream_options", {{"include_usage", true}}}}, &warm);  // warm-up
  std::vector<Level> levels;
  for (int s : o.streams) {
    if (Clock::now() >= deadline) break;
    levels.push_back(run_level(o, server.port, s, deadline));
    const Level& l = levels.back();
    std::fprintf(stderr, "bench_server: %2d streams: %ld tokens in %.2f s = %.1f tok/s (%d failed)\n", s, l.tokens,
                 l.seconds, l.seconds > 0 ? l.tokens / l.seconds : 0.0, l.failed);
  }
  write_results(o, levels, backend);
  std::filesystem::remove(log);
  return 0;
}
