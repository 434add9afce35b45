// sbits-quantize IN.sbits -o OUT.sbits --bpw B [--method uniform] [--quantizer rtn|mse]
//                [--keep NAME=BITS]... [--threads N] [--tile RxC] [--group G]
// Every error is one line "sbits-quantize: error: ..." and exit status 1 (2 for bad usage).
#include <cstdio>
#include <exception>
#include <string>
#include <thread>

#include "engine/tools/cli.h"
#include "quantizer/quantize_file.h"

namespace {

const char* kUsage =
    "usage: sbits-quantize IN.sbits -o OUT.sbits --bpw B [--method uniform] [--quantizer rtn|mse]\n"
    "                      [--keep NAME=BITS]... [--threads N] [--tile RxC] [--group G]\n"
    "  Quantizes every 2-D weight of a float .sbits model (token embedding and classifier\n"
    "  included) into the tiled layout (formats/SBITS.md \"Layout 16\"). This first version is\n"
    "  WEIGHT-ONLY: it uses no calibration data, so there is no sensitivity-based mixed precision\n"
    "  and no GPTQ yet.\n"
    "  --bpw B            budget in bits per weight for the whole file: all tensor bytes x 8 /\n"
    "                     parameters, norm weights and all tile metadata included (exact)\n"
    "  --method uniform   one bitwidth for every weight (the default and, for now, the only\n"
    "                     method): the largest of 16, 8, 6, 5, 4, 3, 2 whose file fits the budget\n"
    "  --quantizer Q      per-tile quantizer: rtn (round to nearest on [min, max]) or mse\n"
    "                     (search of the clipping range minimising the squared error; default)\n"
    "  --keep NAME=BITS   give tensors matching NAME ('*' is a wildcard) BITS instead (2, 3, 4,\n"
    "                     5, 6, 8, or 16 = f16 tiles); repeatable, first match wins\n"
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

void print_progress(size_t i, size_t n, const sbits::quantizer::TensorPlan& t, double s) {
  const double eta = s / double(i + 1) * double(n - i - 1);
  std::fprintf(stderr, "\r[%3zu/%zu] %-24s %-8s %6.1f s, ETA %5.1f s   ", i + 1, n, t.name.c_str(),
               t.quantize ? (std::to_string(t.bits) + " bits").c_str() : "copied", s, eta);
  if (i + 1 == n) std::fputc('\n', stderr);
}

}  // namespace

int main(int argc, char** argv) {
  namespace q = sbits::quantizer;
  std::string in, out;
  q::QuantizeOptions opt;
  opt.threads = int(std::max(1u, std::thread::hardware_concurrency()));
  bool have_bpw = false;
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
      } else if (a == "--method") {
        opt.method = args.value(a);
      } else if (a == "--quantizer") {
        opt.tile_method = q::parse_tile_method(args.value(a));
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
  if (!have_bpw) return usage_error("no budget given (--bpw B)");
  try {
    const q::QuantizeReport r = q::quantize_file(in, out, opt, print_progress);
    std::printf("wrote %s: %d bits (uniform, %s), %.4f bits per weight (budget %.4f), %llu tensor bytes, "
                "%llu file bytes, %.1f s\n",
                out.c_str(), r.plan.bits, q::tile_method_name(opt.tile_method), r.plan.bpw, opt.bpw,
                static_cast<unsigned long long>(r.plan.tensor_bytes), static_cast<unsigned long long>(r.file_bytes),
                r.seconds);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sbits-quantize: error: %s\n", one_line(e.what()).c_str());
    return 1;
  }
  return 0;
}
