// sbits-perplexity: perplexity of a .sbits model on a text file (protocols in engine/perplexity.h).
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <unistd.h>

#include "engine/backends.h"
#include "engine/perplexity.h"
#include "engine/tools/cli.h"

namespace {

using namespace sbits;

const char* kUsage = R"(usage: sbits-perplexity MODEL.sbits -f TEXT [options]

  -f, --file TEXT           text to score
      --ctx N               window length (default 512)
      --protocol P          docs (default; ../shared/data/README.md) or llamacpp
      --max-tokens N        stop after N scored tokens (default: all)
      --kv-type f16|f32     KV cache element type (default f16)
      --batch N             rows per forward call (default 64; GPUs prefer the window length)
      --threads N           CPU threads (default: all cores)
      --backend NAME        cpu, cuda, vulkan or auto (default auto)
      --json                print one JSON object {ppl, ppl_error, nll, tokens, ...} on stdout
  -h, --help                this help
)";

struct Options {
  std::string model, file;
  PerplexityOptions ppl;
  int threads = 0;
  std::string backend = "auto";
  bool json = false;
};

Options parse_args(int argc, char** argv) {
  Options o;
  cli::Args args(argc, argv);
  while (!args.done()) {
    std::string_view a = args.next();
    if (a == "-h" || a == "--help") { std::fputs(kUsage, stdout); std::exit(0); }
    else if (a == "-f" || a == "--file") o.file = args.value(a);
    else if (a == "--ctx") o.ppl.ctx = cli::parse_in_range<int>(a, args.value(a), 2, 1 << 20);
    else if (a == "--max-tokens") o.ppl.max_tokens = cli::parse_number<size_t>(a, args.value(a));
    else if (a == "--batch") o.ppl.batch_rows = cli::parse_in_range<int>(a, args.value(a), 1, 1 << 16);
    else if (a == "--threads") o.threads = cli::parse_in_range<int>(a, args.value(a), 1, 1024);
    else if (a == "--backend") o.backend = args.value(a);
    else if (a == "--json") o.json = true;
    else if (a == "--protocol") {
      std::string v = args.value(a);
      if (v == "docs") o.ppl.protocol = PerplexityProtocol::docs;
      else if (v == "llamacpp") o.ppl.protocol = PerplexityProtocol::llamacpp;
      else throw cli::UsageError("option --protocol expects docs or llamacpp, got '" + v + "'");
    } else if (a == "--kv-type") {
      std::string v = args.value(a);
      if (v != "f16" && v != "f32") throw cli::UsageError("option --kv-type expects f16 or f32, got '" + v + "'");
      o.ppl.kv_type = v == "f16" ? kernels::KvType::f16 : kernels::KvType::f32;
    } else if (a.size() > 1 && a[0] == '-') throw cli::UsageError(fmt::format("unknown option '{}'", a));
    else if (o.model.empty()) o.model = a;
    else throw cli::UsageError(fmt::format("unexpected argument '{}'", a));
  }
  if (o.model.empty()) throw cli::UsageError("no model given");
  if (o.file.empty()) throw cli::UsageError("no text file given (-f TEXT)");
  return o;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw EngineError(fmt::format("{}: cannot open the text file", path));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A progress bar with ETA on stderr, redrawn in place when stderr is a terminal.
std::function<void(size_t, size_t)> progress_bar() {
  auto t0 = std::chrono::steady_clock::now();
  const bool tty = isatty(fileno(stderr));
  return [t0, tty, last = 0.0](size_t done, size_t total) mutable {
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!tty && s - last < 10.0 && done < total) return;
    last = s;
    const double frac = total ? static_cast<double>(done) / static_cast<double>(total) : 1.0;
    const int width = 30, fill = static_cast<int>(frac * width);
    const double eta = done ? s / static_cast<double>(done) * static_cast<double>(total - done) : 0.0;
    std::fprintf(stderr, "%s[%.*s%*s] %zu/%zu tokens, %.0f tok/s, ETA %.0f s%s", tty ? "\r" : "", fill,
                 "##############################", width - fill, "", done, total,
                 s > 0 ? static_cast<double>(done) / s : 0.0, eta, tty ? "" : "\n");
    if (tty && done >= total) std::fputc('\n', stderr);
  };
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  try {
    o = parse_args(argc, argv);
  } catch (const cli::UsageError& e) {
    std::fprintf(stderr, "sbits-perplexity: error: %s\n\n%s", e.what(), kUsage);
    return 2;
  }
  try {
    BackendOptions bo;
    bo.threads = o.threads;
    auto backend = make_backend(o.backend, bo);
    auto model = Model::load(o.model, *backend);
    const std::string text = read_text(o.file);
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<int32_t> ids = perplexity_tokens(model->tokenizer(), text, o.ppl.protocol);
    o.ppl.progress = progress_bar();
    PerplexityResult r = evaluate_perplexity(*model, ids, o.ppl);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const char* protocol = o.ppl.protocol == PerplexityProtocol::docs ? "docs" : "llamacpp";
    if (o.json) {
      nlohmann::json j = {{"ppl", r.ppl},           {"ppl_error", r.ppl_error}, {"nll", r.nll},
                          {"tokens", r.tokens},     {"ctx", o.ppl.ctx},         {"protocol", protocol},
                          {"seconds", secs},        {"model", model->file().path()},
                          {"backend", model->backend().device_description()}};
      std::printf("%s\n", j.dump().c_str());
    } else {
      std::printf("perplexity: %.4f +/- %.4f  (mean NLL %.6f over %zu tokens, ctx %d, protocol %s, %.1f s)\n",
                  r.ppl, r.ppl_error, r.nll, r.tokens, o.ppl.ctx, protocol, secs);
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sbits-perplexity: error: %s\n", e.what());
    return 1;
  }
}
