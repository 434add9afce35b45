// sbits-bench: prefill and decode throughput of a model on a backend (a benchmark, not a test).
//
// Prints a table and writes one JSON file under bench/results/ naming the device, the model and
// the build, so numbers from different machines are never mixed up.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include "engine/backends.h"
#include "engine/session.h"
#include "engine/tools/cli.h"

namespace {

using namespace sbits;

const char* kUsage = R"(usage: sbits-bench MODEL.sbits [options]

  -p N            prompt tokens for the prefill test (default 512)
  -n N            tokens for the decode test (default 128)
  -d N            context depth: decode after N prompt tokens (default 0: after one token)
  -r N            repetitions; the median is reported (default 3)
  --rows N        prompt tokens per forward pass (prefill chunk; default: the backend's,
                  512 on GPUs, 64 on the CPU)
  --threads N     CPU threads (default: all cores)
  --backend NAME  cpu, cuda, vulkan or auto (default auto)
  --kv-type T     f16 or f32 (default f16)
  --top-k K       each decode step brings back the K largest logits, as top-k sampling does
                  (default 40, sbits-run's; 1 as greedy decoding; 0: all logits, as sampling
                  with top-k off or penalties)
  --out FILE      JSON output (default bench/results/engine_<model>_<backend>_<host>.json)
)";

struct Options {
  std::string model, backend = "auto", out;
  int prompt = 512, decode = 128, depth = 0, reps = 3, threads = 0, rows = 0, top_k = 40;
  kernels::KvType kv = kernels::KvType::f16;
};

Options parse(int argc, char** argv) {
  Options o;
  cli::Args a(argc, argv);
  while (!a.done()) {
    std::string_view s = a.next();
    if (s == "-h" || s == "--help") { std::fputs(kUsage, stdout); std::exit(0); }
    else if (s == "-p") o.prompt = cli::parse_in_range<int>(s, a.value(s), 1, 1 << 20);
    else if (s == "-n") o.decode = cli::parse_in_range<int>(s, a.value(s), 1, 1 << 20);
    else if (s == "-d") o.depth = cli::parse_in_range<int>(s, a.value(s), 0, 1 << 20);
    else if (s == "-r") o.reps = cli::parse_in_range<int>(s, a.value(s), 1, 1000);
    else if (s == "--rows") o.rows = cli::parse_in_range<int>(s, a.value(s), 1, 1 << 16);
    else if (s == "--threads") o.threads = cli::parse_in_range<int>(s, a.value(s), 1, 1024);
    else if (s == "--backend") o.backend = a.value(s);
    else if (s == "--out") o.out = a.value(s);
    else if (s == "--top-k") o.top_k = cli::parse_in_range<int>(s, a.value(s), 0, kernels::Backend::kMaxTopK);
    else if (s == "--kv-type") {
      std::string v = a.value(s);
      if (v != "f16" && v != "f32") throw cli::UsageError("option --kv-type expects f16 or f32, got '" + v + "'");
      o.kv = v == "f16" ? kernels::KvType::f16 : kernels::KvType::f32;
    } else if (s.size() > 1 && s[0] == '-') throw cli::UsageError(fmt::format("unknown option '{}'", s));
    else if (o.model.empty()) o.model = s;
    else throw cli::UsageError(fmt::format("unexpected argument '{}'", s));
  }
  if (o.model.empty()) throw cli::UsageError("no model given");
  return o;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Ordinary (non-control) tokens in a fixed pseudo-random order: real-looking input, same every run.
std::vector<int32_t> bench_tokens(const Model& m, int n) {
  std::vector<int32_t> ids = {m.tokenizer().bos_id() >= 0 ? m.tokenizer().bos_id() : 0};
  uint64_t x = 0x9E3779B97F4A7C15ull;
  const auto vocab = static_cast<uint64_t>(m.config().vocab_size);
  while (static_cast<int>(ids.size()) < n) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    const auto id = static_cast<int32_t>(x % vocab);
    if (!m.tokenizer().is_control(id)) ids.push_back(id);
  }
  return ids;
}

double time_seconds(const std::function<void()>& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string host_name() {
  char buf[256] = {};
  gethostname(buf, sizeof buf - 1);
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  try {
    o = parse(argc, argv);
  } catch (const cli::UsageError& e) {
    std::fprintf(stderr, "sbits-bench: error: %s\n\n%s", e.what(), kUsage);
    return 2;
  }
  try {
    BackendOptions bo;
    bo.threads = o.threads;
    auto backend = make_backend(o.backend, bo);
    auto model = Model::load(o.model, *backend);
    const std::vector<int32_t> prompt = bench_tokens(*model, std::max(o.prompt, o.depth + 1));
    const auto prompt_span = std::span<const int32_t>(prompt).first(static_cast<size_t>(o.prompt));
    Session s(*model, SessionOptions{static_cast<int>(prompt.size()) + o.decode + 1, o.kv, o.rows});
    if (o.top_k > static_cast<int>(model->config().vocab_size))
      throw std::runtime_error(
          fmt::format("--top-k {} exceeds the vocabulary ({})", o.top_k, model->config().vocab_size));
    std::vector<int32_t> top_ids(static_cast<size_t>(o.top_k));
    std::vector<float> top_logits(top_ids.size());
    // A decode step as generation runs it: the next token's logits, all or the top-k.
    const auto decode_step = [&](int32_t token) {
      if (o.top_k > 0)
        s.feed_top_k(std::span(&token, 1), top_ids, top_logits);
      else
        s.feed(std::span(&token, 1));
    };
    std::vector<double> pp, tg;
    // Warm-up: the whole prompt (scratch grown to the chunk size, GEMM plans made) and two decode
    // steps (decode graphs captured), so that no repetition pays first-use costs; with a median of
    // two a first-use cost would otherwise be the reported value.
    s.feed(prompt_span);
    for (size_t i = 0; i < 2; ++i) decode_step(prompt[i % prompt.size()]);
    for (int r = 0; r < o.reps; ++r) {
      s.reset();
      pp.push_back(time_seconds([&] { s.feed(prompt_span); }));
      s.reset();
      s.feed(std::span<const int32_t>(prompt).first(static_cast<size_t>(o.depth) + 1));
      tg.push_back(time_seconds([&] {
        for (size_t i = 0; i < size_t(o.decode); ++i)
          decode_step(prompt.size() > 1 ? prompt[1 + i % (prompt.size() - 1)] : prompt[0]);
      }));
    }
    const double pp_tps = o.prompt / median(pp), tg_tps = o.decode / median(tg);
    const double weight_bytes = model->bits_per_weight() * static_cast<double>(model->parameter_count()) / 8.0;
    const std::string device = backend->device_description();
    std::printf("| model | backend | device | bpw | prefill %d tok/s | decode tok/s (%s, depth %d) |\n"
                "|---|---|---|---|---|---|\n",
                o.prompt, o.top_k > 0 ? fmt::format("top-{}", o.top_k).c_str() : "all logits", o.depth);
    std::printf("| %s | %s | %s | %.2f | %.1f | %.1f |\n", std::filesystem::path(o.model).filename().c_str(),
                backend->name().c_str(), device.c_str(), model->bits_per_weight(), pp_tps, tg_tps);

    std::time_t now = std::time(nullptr);
    char date[32];
    std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
    nlohmann::json j = {{"tool", "sbits-bench"}, {"date", date}, {"host", host_name()}, {"backend", backend->name()},
                        {"device", device}, {"model", o.model}, {"bpw", model->bits_per_weight()},
                        {"params", model->parameter_count()}, {"weight_bytes", weight_bytes},
                        {"prefill_tokens", o.prompt}, {"prefill_chunk_rows", s.max_batch_rows()}, {"prefill_tok_s", pp_tps},
                        {"decode_tokens", o.decode}, {"decode_depth", o.depth}, {"decode_top_k", o.top_k},
                        {"decode_tok_s", tg_tps}, {"repetitions", o.reps},
                        {"kv_type", o.kv == kernels::KvType::f16 ? "f16" : "f32"}};
    std::string out = o.out;
    if (out.empty())
      out = fmt::format("bench/results/engine_{}_{}_{}.json", std::filesystem::path(o.model).stem().string(),
                        backend->name(), host_name());
    std::filesystem::create_directories(std::filesystem::path(out).parent_path().empty()
                                            ? std::filesystem::path(".")
                                            : std::filesystem::path(out).parent_path());
    const std::string tmp = out + ".tmp";
    std::ofstream(tmp) << j.dump(2) << "\n";
    std::filesystem::rename(tmp, out);
    std::fprintf(stderr, "sbits-bench: wrote %s\n", out.c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sbits-bench: error: %s\n", e.what());
    return 1;
  }
}
