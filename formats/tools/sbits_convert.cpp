// sbits-convert SRC -o OUT.sbits [--tokenizer FILE] [--dtype bf16|f16|f32]
//               [--chat-template NAME|FILE] [--name NAME]
// Every error is one line "sbits-convert: error: ..." and exit status 1 (2 for bad usage).
#include <chrono>
#include <cstdio>
#include <exception>
#include <string>

#include "formats/import.h"

namespace {

const char* kUsage =
    "usage: sbits-convert SRC -o OUT.sbits [--tokenizer FILE] [--dtype bf16|f16|f32]\n"
    "                     [--chat-template NAME|FILE] [--name NAME]\n"
    "  SRC is a Hugging Face model directory (LlamaForCausalLM, MistralForCausalLM; config.json\n"
    "  and safetensors) or a llama2.c .bin checkpoint.\n"
    "  -o OUT             the .sbits file to write (atomically)\n"
    "  --tokenizer FILE   SentencePiece .model or llama2.c tokenizer.bin (default for a\n"
    "                     Hugging Face directory: its tokenizer.model; required for llama2.c)\n"
    "  --dtype T          convert float tensors to bf16, f16 or f32 (default: keep)\n"
    "  --chat-template X  llama2, chatml, zephyr, plain, or a file holding a template\n"
    "  --name NAME        general.name (default: the source's base name)\n"
    "  --help             print this help\n";

std::string one_line(std::string s) {
  for (char& c : s) c = (c == '\n' || c == '\r') ? ' ' : c;
  return s;
}

int usage_error(const std::string& msg) {
  std::fprintf(stderr, "sbits-convert: error: %s\n%s", one_line(msg).c_str(), kUsage);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string src, out, dtype;
  sbits::ImportOptions opt;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](std::string& dst) {
      if (i + 1 >= argc) return false;
      dst = argv[++i];
      return true;
    };
    bool ok = true;
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (a == "-o" || a == "--output") {
      ok = value(out);
    } else if (a == "--tokenizer") {
      ok = value(opt.tokenizer_path);
    } else if (a == "--dtype") {
      ok = value(dtype);
    } else if (a == "--chat-template") {
      ok = value(opt.chat_template);
    } else if (a == "--name") {
      ok = value(opt.name);
    } else if (!a.empty() && a[0] == '-') {
      return usage_error("unknown option " + a);
    } else if (src.empty()) {
      src = a;
    } else {
      return usage_error("more than one SRC given");
    }
    if (!ok) return usage_error("option " + a + " needs a value");
  }
  if (src.empty()) return usage_error("no SRC given");
  if (out.empty()) return usage_error("no output given (-o OUT.sbits)");
  try {
    if (!dtype.empty()) opt.dtype = sbits::parse_float_dtype(dtype);
    auto t0 = std::chrono::steady_clock::now();
    sbits::ImportResult r = sbits::import_model(src, out, opt);
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("wrote %s: %s model, %llu tensors, %llu parameters, %llu tensor bytes, tokenizer %s, %.2f s\n",
                out.c_str(), sbits::source_kind_name(r.kind), static_cast<unsigned long long>(r.tensor_count),
                static_cast<unsigned long long>(r.parameter_count), static_cast<unsigned long long>(r.tensor_bytes),
                r.tokenizer_kind.c_str(), s);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sbits-convert: error: %s\n", one_line(e.what()).c_str());
    return 1;
  }
  return 0;
}
