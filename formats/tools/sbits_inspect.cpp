// sbits-inspect FILE [--verify] [--json]: prints what a .sbits file holds, after validating it.
// Every error is one line "sbits-inspect: error: ..." and exit status 1 (2 for bad usage).
#include <cstdio>
#include <exception>
#include <string>

#include "formats/sbits_file.h"
#include "formats/tools/inspect_report.h"

namespace {

const char* kUsage =
    "usage: sbits-inspect FILE [--verify] [--json]\n"
    "  Validates a .sbits file and prints its header, metadata, tensors, parameter count and\n"
    "  bits per weight.\n"
    "  --verify   also check every tensor's xxh64\n"
    "  --json     print one JSON object instead of text\n"
    "  --help     print this help\n";

std::string one_line(std::string s) {
  for (char& c : s) c = (c == '\n' || c == '\r') ? ' ' : c;
  return s;
}

int usage_error(const std::string& msg) {
  std::fprintf(stderr, "sbits-inspect: error: %s\n%s", one_line(msg).c_str(), kUsage);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string path;
  bool verify = false, as_json = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (a == "--verify") {
      verify = true;
    } else if (a == "--json") {
      as_json = true;
    } else if (!a.empty() && a[0] == '-') {
      return usage_error("unknown option " + a);
    } else if (path.empty()) {
      path = a;
    } else {
      return usage_error("more than one FILE given");
    }
  }
  if (path.empty()) return usage_error("no FILE given");
  try {
    sbits::OpenOptions opt;
    opt.verify_tensors = verify;
    auto f = sbits::SbitsFile::open(path, opt);
    auto summary = sbits::tools::summarize(*f, verify);
    if (as_json) {
      std::string out = sbits::tools::inspect_json(*f, summary).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
      std::printf("%s\n", out.c_str());
    } else {
      std::fputs(sbits::tools::inspect_text(*f, summary).c_str(), stdout);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sbits-inspect: error: %s\n", one_line(e.what()).c_str());
    return 1;
  }
  return 0;
}
