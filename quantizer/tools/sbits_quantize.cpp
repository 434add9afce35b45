// sbits-quantize IN -o OUT.sbits (--bpw B | --size BYTES) [--calib FILE] [--method ...] ...
// Every error is one line "sbits-quantize: error: ..." and exit status 1 (2 for bad usage).
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <thread>

#include "engine/tools/cli.h"
#include "quantizer/calibration.h"
#include "quantizer/quantize_file.h"
#include "quantizer/report.h"

namespace {

const char* kUsage =
    "usage: sbits-quantize IN -o OUT.sbits (--bpw B | --size BYTES) [--calib FILE]\n"
    "                      [--method greedy|layerwise|uniform] [--sensitivity proxy|grad]\n"
    "                      [--quantizer rtn|mse|gptq] [--no-reorder] [--keep NAME=BITS]...\n"
    "                      [--calib-tokens N] [--alloc greedy|lagrange] [--cache DIR]\n"
    "                      [--threads N]\n"
    "                      [--tile RxC] [--group G] [--report REPORT.html]\n"
    "  Quantizes every 2-D weight of a float model (token embedding and classifier included)\n"
    "  into the tiled layout (formats/SBITS.md \"Layout 16\"): one bitwidth of 2, 3, 4, 5, 6, 8\n"
    "  or 16 per tile.\n"
    "  IN                 a float .sbits file or a Hugging Face checkpoint directory\n"
    "  --bpw B            budget in bits per weight for the whole file: all tensor bytes x 8 /\n"
    "                     parameters, norm weights and all tile metadata included (exact)\n"
    "  --size BYTES       budget as a whole-file size instead (K/M/G suffixes allowed)\n"
    "  --calib FILE       calibration text (never the evaluation text); needed by greedy,\n"
    "                     layerwise and gptq\n"
    "  --calib-tokens N   calibration tokens (default 16384, in windows of 512)\n"
    "  --method M         greedy: one bitwidth per tile by predicted loss gain per byte (the\n"
    "                     default with --calib); layerwise: one per matrix; uniform: one for all\n"
    "                     (the default without --calib)\n"
    "  --sensitivity S    grad: loss increase from a diagonal Fisher of a backward pass over\n"
    "                     the calibration windows (default); proxy: activation-weighted relative\n"
    "                     output error (no backward pass, worse allocations)\n"
    "  --fisher F         grad: sampled (targets drawn from the model: the true Fisher; default)\n"
    "                     or empirical (gradients of the next-token loss)\n"
    "  --grad-tokens N    grad: tokens of the backward pass, spread over the calibration windows\n"
    "                     (default 4096; 0 = all calibration tokens)\n"
    "  --cache DIR        keep the calibration statistics and sensitivities in DIR and reuse\n"
    "                     them for the same model, text and settings (several budgets, one pass)\n"
    "  --no-reorder       do not permute channels (by default sensitive channels are clustered\n"
    "                     into the same tiles with permutations folded into the weights)\n"
    "  --quantizer Q      per-tile quantizer: gptq (error feedback with X^T X inside tiles; the\n"
    "                     default with --calib), mse (activation-weighted clipping search; the\n"
    "                     default without) or rtn (round to nearest)\n"
    "  --alloc A          greedy (exact marginal-gain greedy; default) or lagrange (bisection\n"
    "                     on a price per byte: the scalable form)\n"
    "  --keep NAME=BITS   give tensors matching NAME ('*' is a wildcard) BITS instead (2, 3, 4,\n"
    "                     5, 6, 8, or 16 = f16 tiles); repeatable, first match wins\n"
    "  --report FILE      write a self-contained HTML report (bitwidth heatmap, histograms,\n"
    "                     predicted vs measured loss on 2048 calibration tokens)\n"
    "  --threads N        worker threads (default: all cores)\n"
    "  --tile RxC         tile shape (default 64x128); --group G: scale group (default 128)\n"
    "  -o OUT             the .sbits file to write (atomically)\n"
    "  --help             print this help\n";

std::string one_line(std::string s) {
  for (char& c : s) c = (c == '\n' || c == '\r') ? ' ' : c;
  return s;
}

int usage_error(const std::string& msg) {
  std::fprintf(stderr, "sbits-quantize: error: %s\n%s", one_line(msg).c_str(), kUsage);
  return 2;
}

void parse_tile(const std::string& text, sbits::TiledParams& p) {
  const size_t x = text.find('x');
  if (x == std::string::npos) throw sbits::cli::UsageError("option --tile expects RxC, e.g. 64x128, got '" + text + "'");
  p.tile_rows = sbits::cli::parse_in_range<uint32_t>("--tile", text.substr(0, x), 1, 4096);
  p.tile_cols = sbits::cli::parse_in_range<uint32_t>("--tile", text.substr(x + 1), 32, 4096);
}

uint64_t parse_size(const std::string& text) {
  size_t pos = 0;
  double v = 0;
  try {
    v = std::stod(text, &pos);
  } catch (const std::exception&) {
    pos = 0;
  }
  const std::string suffix = text.substr(pos);
  const double mult = suffix.empty() ? 1 : suffix == "K" ? 1e3 : suffix == "M" ? 1e6 : suffix == "G" ? 1e9
                    : suffix == "KiB" ? 1024.0 : suffix == "MiB" ? 1048576.0 : suffix == "GiB" ? 1073741824.0 : -1;
  if (pos == 0 || mult < 0 || !(v > 0))
    throw sbits::cli::UsageError("option --size expects a positive byte count like 25000000, 25M or 24MiB, got '" +
                                 text + "'");
  return uint64_t(v * mult);
}

void print_progress(const char* phase, size_t done, size_t total, double s) {
  static std::string last_phase;
  static double phase_start = 0;
  if (last_phase != phase) {
    if (!last_phase.empty()) std::fputc('\n', stderr);
    last_phase = phase;
    phase_start = s;
  }
  const double in_phase = s - phase_start;
  const double eta = done ? in_phase / double(done) * double(total - done) : 0.0;
  std::fprintf(stderr, "\r%-26s [%4zu/%zu] %6.1f s, phase ETA %5.1f s   ", phase, done, total, s, eta);
}

void print_summary(const std::string& out, const sbits::quantizer::QuantizeOptions& opt,
                   const sbits::quantizer::QuantizeReport& r) {
  namespace q = sbits::quantizer;
  std::map<int, uint64_t> tiles;
  for (const q::TensorPlan& t : r.plan.tensors) {
    if (!t.quantize) continue;
    if (t.tile_bits.empty()) {
      ++tiles[t.bits];
    } else {
      for (uint8_t b : t.tile_bits) ++tiles[b];
    }
  }
  std::printf("wrote %s: method %s, quantizer %s, %.4f bits per weight (budget %.4f), %llu tensor bytes, "
              "%llu file bytes, %.1f s\n",
              out.c_str(), opt.method.c_str(), q::tile_method_name(opt.tile_method), r.plan.bpw, opt.bpw,
              static_cast<unsigned long long>(r.plan.tensor_bytes), static_cast<unsigned long long>(r.file_bytes),
              r.seconds);
  std::printf("  %s:", r.plan.tensors.empty() || r.plan.tensors[0].tile_bits.empty() ? "tensors per bitwidth"
                                                                                     : "tiles per bitwidth");
  for (const auto& [bits, n] : tiles) std::printf(" %d-bit %llu", bits, static_cast<unsigned long long>(n));
  std::printf("\n");
  const q::MixedStats& m = r.mixed;
  if (m.calib_tokens) {
    std::printf("  calibration: %llu tokens, loss %.4f; sensitivity %s; reorder %s; predicted loss increase %.5f\n",
                static_cast<unsigned long long>(m.calib_tokens), m.calib_loss, opt.sensitivity.c_str(),
                m.reordered ? "yes" : "no", m.predicted);
    if (m.budget_bytes)
      std::printf("  allocation: greedy %.6f (%llu B), lagrange %.6f (%llu B) of %llu B\n", m.predicted_greedy,
                  static_cast<unsigned long long>(m.bytes_greedy), m.predicted_lagrange,
                  static_cast<unsigned long long>(m.bytes_lagrange), static_cast<unsigned long long>(m.budget_bytes));
    std::printf("  time: calibration+sensitivity %.1f s, error tables %.1f s, write %.1f s\n", m.seconds_calibration,
                m.seconds_tables, m.seconds_write);
  }
}

// The report measures the loss before and after on the first calibration windows (the
// predicted loss increase is checked against reality there).
void write_html_report(const std::string& in, const std::string& out, const std::string& path,
                       const sbits::quantizer::QuantizeOptions& opt, const sbits::quantizer::QuantizeReport& r) {
  namespace q = sbits::quantizer;
  q::ReportInput ri;
  ri.input_path = in;
  ri.output_path = out;
  ri.options = &opt;
  ri.report = &r;
  auto f = sbits::SbitsFile::open(out);
  ri.output = f.get();
  if (!opt.calib_path.empty() && !std::filesystem::is_directory(in)) {
    std::ifstream t(opt.calib_path, std::ios::binary);
    const std::string text((std::istreambuf_iterator<char>(t)), std::istreambuf_iterator<char>());
    std::fprintf(stderr, "report: measuring the loss before and after on 2048 calibration tokens\n");
    ri.loss_before = q::calibration_loss(in, text, 2048, opt.calib_seq, opt.threads, &ri.measured_tokens);
    ri.loss_after = q::calibration_loss(out, text, 2048, opt.calib_seq, opt.threads);
  }
  q::write_report(path, q::render_report_html(ri));
  std::printf("  report: %s\n", path.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  namespace q = sbits::quantizer;
  std::string in, out, report_path;
  q::QuantizeOptions opt;
  opt.threads = int(std::max(1u, std::thread::hardware_concurrency()));
  bool have_bpw = false, have_method = false, have_quantizer = false;
  try {
    sbits::cli::Args args(argc, argv);
    while (!args.done()) {
      const std::string a(args.next());
      if (a == "--help" || a == "-h") {
        std::fputs(kUsage, stdout);
        return 0;
      } else if (a == "-o" || a == "--output") {
        out = args.value(a);
      } else if (a == "--bpw") {
        opt.bpw = sbits::cli::parse_in_range<double>(a, args.value(a), 0.1, 64.0);
        have_bpw = true;
      } else if (a == "--size") {
        opt.size_bytes = parse_size(args.value(a));
      } else if (a == "--method") {
        opt.method = args.value(a);
        have_method = true;
      } else if (a == "--report") {
        report_path = args.value(a);
      } else if (a == "--calib") {
        opt.calib_path = args.value(a);
      } else if (a == "--calib-tokens") {
        opt.calib_tokens = sbits::cli::parse_in_range<size_t>(a, args.value(a), 1, size_t(1) << 30);
      } else if (a == "--sensitivity") {
        opt.sensitivity = args.value(a);
      } else if (a == "--fisher") {
        opt.fisher = args.value(a);
      } else if (a == "--grad-tokens") {
        opt.grad_tokens = sbits::cli::parse_in_range<size_t>(a, args.value(a), 0, size_t(1) << 30);
      } else if (a == "--cache") {
        opt.cache_dir = args.value(a);
      } else if (a == "--no-reorder") {
        opt.reorder = false;
      } else if (a == "--alloc") {
        const std::string v(args.value(a));
        if (v != "greedy" && v != "lagrange")
          throw sbits::cli::UsageError("option --alloc expects greedy or lagrange, got '" + v + "'");
        opt.alloc = v == "greedy" ? q::AllocMethod::greedy : q::AllocMethod::lagrange;
      } else if (a == "--quantizer") {
        opt.tile_method = q::parse_tile_method(args.value(a));
        have_quantizer = true;
      } else if (a == "--keep") {
        opt.keep.push_back(q::parse_keep_rule(args.value(a)));
      } else if (a == "--threads") {
        opt.threads = sbits::cli::parse_in_range<int>(a, args.value(a), 1, 1024);
      } else if (a == "--tile") {
        parse_tile(args.value(a), opt.params);
      } else if (a == "--group") {
        opt.params.group = sbits::cli::parse_in_range<uint32_t>(a, args.value(a), 32, 4096);
      } else if (!a.empty() && a[0] == '-') {
        return usage_error("unknown option " + a);
      } else if (in.empty()) {
        in = a;
      } else {
        return usage_error("more than one input given");
      }
    }
  } catch (const std::exception& e) {
    return usage_error(e.what());
  }
  if (in.empty()) return usage_error("no input given");
  if (out.empty()) return usage_error("no output given (-o OUT.sbits)");
  if (have_bpw == (opt.size_bytes != 0)) return usage_error("give exactly one budget: --bpw B or --size BYTES");
  if (!have_method) opt.method = opt.calib_path.empty() ? "uniform" : "greedy";
  if (!have_quantizer) opt.tile_method = opt.calib_path.empty() ? q::TileMethod::mse : q::TileMethod::gptq;
  try {
    const q::QuantizeReport r = q::quantize_file(in, out, opt, print_progress);
    std::fputc('\n', stderr);
    print_summary(out, opt, r);
    if (!report_path.empty()) write_html_report(in, out, report_path, opt, r);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sbits-quantize: error: %s\n", one_line(e.what()).c_str());
    return 1;
  }
  return 0;
}
