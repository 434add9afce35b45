// sbits-quantize end to end on stories260K: exact byte accounting (the plan, the metadata and
// the file agree), the budget rule, --keep, errors, and the quantized model running on the CPU
// engine (16-bit tiles reproduce llama2.c's golden text exactly; 4 bpw stays close to it).
#include <doctest/doctest.h>


#include "formats/tiled_layout.h"
#include "quantizer/quantize_file.h"
#include "tests/quantizer/quantizer_test_util.h"
#include "tests/test_data.h"

namespace sbits::quantizer {
namespace {

using test_util::stories_sbits;
using test_util::tool;

std::string quantize(const std::string& args, int want_status, std::string* out = nullptr, std::string* err = nullptr) {
  std::string o, e;
  const int st = test::run_command(tool("quantizer/sbits-quantize") + " " + args, &o, &e);
  INFO("stdout: ", o, "\nstderr: ", e);
  CHECK(st == want_status);
  if (out) *out = o;
  if (err) *err = e;
  return o;
}

std::string greedy_text(const std::string& model) {
  std::string o, e;
  REQUIRE_MESSAGE(test::run_command(tool("engine/sbits-run") + " " + model + " -p \"\" -n 200 --temp 0", &o, &e) == 0, e);
  return o;
}

size_t common_prefix(const std::string& a, const std::string& b) {
  size_t n = 0;
  while (n < a.size() && n < b.size() && a[n] == b[n]) ++n;
  return n;
}

}  // namespace

TEST_CASE("sbits-quantize: uniform 4 bpw on stories260K, exact accounting, runs on the engine") {
  const std::string out = test::temp_dir() + "/s4.sbits";
  const std::string msg = quantize(stories_sbits() + " -o " + out + " --bpw 4 --quantizer mse --threads 2", 0);
  CHECK(msg.find("method uniform, quantizer mse") != std::string::npos);
  CHECK(msg.find("tensors per bitwidth: 3-bit") != std::string::npos);  // 4 bits would be 4.66 bpw (64-wide rows)
  auto f = SbitsFile::open(out, {.verify_tensors = true});
  uint64_t bytes = 0, params = 0;
  for (const TensorInfo& t : f->tensors()) {
    bytes += t.size;
    params += t.element_count();
    if (t.shape.size() == 2) {
      CHECK(t.layout == kTiledLayoutId);
      const TiledTensor tt = parse_tiled(t, f->bytes(t), "");
      for (uint8_t b : tt.bits) CHECK(b == 3);
    }
  }
  const double bpw = double(bytes) * 8.0 / double(params);
  CHECK(bpw <= 4.0);
  CHECK(f->metadata().get_f64("quantizer.bpw") == bpw);
  CHECK(f->metadata().get_u64("quantizer.uniform_bits") == 3);
  CHECK(f->metadata().get_string("quantizer.tile_quantizer") == "mse");
  CHECK(f->metadata().get_string("quantizer.calibration").find("none") != std::string::npos);
  CHECK(f->metadata().get_string("general.architecture") == "llama");
  const std::string golden = test::read_text_file(test::data_path("golden/stories260K_greedy200_expected.txt"));
  const std::string text = greedy_text(out);
  MESSAGE("3-bit stories260K: ", common_prefix(text, golden), " of ", golden.size(), " golden characters agree");
  CHECK(text.rfind("Once upon a time, there was a little", 0) == 0);
}

TEST_CASE("sbits-quantize: 16-bit tiles reproduce the golden text exactly") {
  const std::string out = test::temp_dir() + "/s16.sbits";
  CHECK(quantize(stories_sbits() + " -o " + out + " --bpw 17 --quantizer rtn", 0).find(": 16-bit") != std::string::npos);
  CHECK(greedy_text(out) == test::read_text_file(test::data_path("golden/stories260K_greedy200_expected.txt")));
}

TEST_CASE("sbits-quantize: --keep pins tensors, and the plan predicts the file") {
  auto in = SbitsFile::open(stories_sbits());
  const std::vector<KeepRule> keep = {parse_keep_rule("blk.*.ffn_down=8"), parse_keep_rule("tok_embd=16")};
  const FilePlan plan = plan_uniform(*in, 6.5, keep, TiledParams{});
  const std::string out = test::temp_dir() + "/keep.sbits";
  quantize(stories_sbits() + " -o " + out + " --bpw 6.5 --quantizer rtn --keep 'blk.*.ffn_down=8' --keep tok_embd=16", 0);
  auto f = SbitsFile::open(out);
  uint64_t bytes = 0;
  for (size_t i = 0; i < f->tensors().size(); ++i) {
    const TensorInfo& t = f->tensors()[i];
    bytes += t.size;
    CHECK(t.size == plan.tensors[i].bytes);
    if (t.layout != kTiledLayoutId) continue;
    const int want = t.name == "tok_embd" ? 16 : t.name.find("ffn_down") != std::string::npos ? 8 : plan.bits;
    for (uint8_t b : parse_tiled(t, f->bytes(t), "").bits) CHECK(int(b) == want);
  }
  CHECK(bytes == plan.tensor_bytes);
  CHECK(plan.bpw <= 6.5);
}

TEST_CASE("sbits-quantize: errors name the cause") {
  const std::string out = test::temp_dir() + "/bad.sbits";
  std::string err;
  quantize(stories_sbits() + " -o " + out + " --bpw 1", 1, nullptr, &err);
  CHECK(err.find("even 2 bits everywhere gives") != std::string::npos);
  quantize(stories_sbits() + " -o " + out + " --bpw 4 --quantizer gptq", 1, nullptr, &err);
  CHECK(err.find("calibration") != std::string::npos);
  quantize(stories_sbits() + " -o " + out + " --bpw 4 --keep output=7", 2, nullptr, &err);
  CHECK(err.find("BITS one of 2, 3, 4, 5, 6, 8, 16") != std::string::npos);
  quantize(stories_sbits() + " -o " + out + " --bpw 4 --method greedy", 1, nullptr, &err);
  CHECK(err.find("needs --calib FILE") != std::string::npos);
  quantize(stories_sbits() + " -o " + out + " --bpw 4 --size 1M", 2, nullptr, &err);
  CHECK(err.find("exactly one budget") != std::string::npos);
  quantize(stories_sbits() + " -o " + out + " --size 12parsecs", 2, nullptr, &err);
  CHECK(err.find("--size expects a positive byte count") != std::string::npos);
  quantize(stories_sbits() + " -o " + out + " --bpw 4 --calib /nonexistent/calib.txt", 1, nullptr, &err);
  CHECK(err.find("cannot open the calibration text") != std::string::npos);
  quantize(stories_sbits() + " -o " + out + " --bpw 4 --calib " + test::data_path("text/techdocs_calib.txt") +
               " --fisher bogus", 1, nullptr, &err);
  CHECK(err.find("--fisher bogus: expected empirical or sampled") != std::string::npos);
  quantize(stories_sbits() + " -o " + out + " --bpw 4 --calib " + test::data_path("text/techdocs_calib.txt") +
               " --sensitivity hunch", 1, nullptr, &err);
  CHECK(err.find("--sensitivity hunch: expected proxy or grad") != std::string::npos);
  const std::string q = test::temp_dir() + "/q.sbits";
  quantize(stories_sbits() + " -o " + q + " --bpw 8", 0);
  quantize(q + " -o " + out + " --bpw 8", 1, nullptr, &err);
  CHECK(err.find("already tiled") != std::string::npos);
  std::string help;
  quantize("--help", 0, &help);
  CHECK(help.find("--calib FILE") != std::string::npos);
}

TEST_CASE("glob patterns for --keep") {
  CHECK(glob_match("blk.*.ffn_down", "blk.12.ffn_down"));
  CHECK(glob_match("*", "output"));
  CHECK(glob_match("output", "output"));
  CHECK_FALSE(glob_match("output", "output_norm"));
  CHECK(glob_match("blk.*", "blk.0.attn_q"));
  CHECK_FALSE(glob_match("blk.*.attn_q", "blk.0.attn_k"));
  CHECK(glob_match("*ffn*", "blk.3.ffn_gate"));
}

}  // namespace sbits::quantizer
