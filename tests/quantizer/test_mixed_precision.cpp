// The calibrated pipeline end to end on stories260K (calibration text: techdocs_calib.txt):
// exact budgets (--bpw and --size), the calibration recorded in the metadata, per-tile and
// per-matrix allocations, and channel reordering that leaves the model's function unchanged.
#include <doctest/doctest.h>
#include <xxhash.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>

#include "engine/forward.h"
#include "formats/tiled_layout.h"
#include "kernels/cpu/cpu_backend.h"
#include "quantizer/quantize_file.h"
#include "tests/quantizer/quantizer_test_util.h"
#include "tests/test_data.h"

namespace sbits::quantizer {
namespace {

using test_util::stories_sbits;
using test_util::tool;

std::string calib() { return test::data_path("text/techdocs_calib.txt"); }

// Runs sbits-quantize with calibration; returns stdout.
std::string quantize(const std::string& out, const std::string& args) {
  std::string o, e;
  const int st = test::run_command(tool("quantizer/sbits-quantize") + " " + stories_sbits() + " -o " + out +
                                       " --calib " + calib() + " --calib-tokens 1024 --threads 2 " + args,
                                   &o, &e);
  INFO("stdout: ", o, "\nstderr: ", e);
  REQUIRE(st == 0);
  return o;
}

double file_bpw(const SbitsFile& f) {
  uint64_t bytes = 0, params = 0;
  for (const TensorInfo& t : f.tensors()) {
    bytes += t.size;
    params += t.element_count();
  }
  return double(bytes) * 8.0 / double(params);
}

// Logits of the last of a few tokens, on the CPU backend.
std::vector<float> last_logits(const std::string& path) {
  auto be = kernels::make_cpu_backend(2);
  auto model = Model::load(path, *be);
  Forward fwd(*model, 8);
  auto cache = fwd.make_kv_cache(1, 16, kernels::KvType::f32);
  const std::vector<int32_t> ids = {1, 403, 79, 261, 300, 17};
  std::vector<kernels::RowInfo> rows;
  for (int i = 0; i < int(ids.size()); ++i) rows.push_back({0, i});
  const int32_t last = int32_t(ids.size()) - 1;
  std::vector<float> logits(model->config().vocab_size);
  fwd.run(*cache, ids, rows, std::span(&last, 1), logits.data());
  return logits;
}

}  // namespace

TEST_CASE("greedy mixed precision: the budget holds exactly and the calibration is recorded") {
  const std::string out = test::temp_dir() + "/g4.sbits";
  const std::string msg = quantize(out, "--bpw 4");
  CHECK(msg.find("method greedy") != std::string::npos);
  auto f = SbitsFile::open(out, {.verify_tensors = true});
  const double bpw = file_bpw(*f);
  MESSAGE("greedy stories260K: ", bpw, " bits per weight");
  CHECK(bpw <= 4.0);
  CHECK(bpw > 3.9);  // the allocator spends the budget
  CHECK(f->metadata().get_f64("quantizer.bpw") == bpw);
  const std::string text = test::read_text_file(calib());
  char hash[17];
  std::snprintf(hash, sizeof hash, "%016llx", static_cast<unsigned long long>(XXH64(text.data(), text.size(), 0)));
  CHECK(f->metadata().get_string("quantizer.calibration").find(hash) != std::string::npos);
  CHECK(f->metadata().get_string("quantizer.method") == "greedy");
  CHECK(f->metadata().get_string("quantizer.reorder").find("hidden+ffn") != std::string::npos);
  std::set<int> seen;
  for (const TensorInfo& t : f->tensors())
    if (t.layout == kTiledLayoutId)
      for (uint8_t b : parse_tiled(t, f->bytes(t), "").bits) seen.insert(b);
  CHECK(seen.size() >= 2);  // really mixed
  std::string o, e;
  REQUIRE(test::run_command(tool("engine/sbits-run") + " " + out + " -p \"\" -n 200 --temp 0", &o, &e) == 0);
  const std::string golden = test::read_text_file(test::data_path("golden/stories260K_greedy200_expected.txt"));
  size_t same = 0;
  while (same < o.size() && same < golden.size() && o[same] == golden[same]) ++same;
  MESSAGE("greedy 4 bpw stories260K: the first ", same, " of ", golden.size(), " golden characters agree");
  CHECK(o.rfind("Once upon a time", 0) == 0);
}

TEST_CASE("--size is a whole-file byte budget") {
  const std::string out = test::temp_dir() + "/size.sbits";
  const uint64_t size = 200000;
  quantize(out, "--size " + std::to_string(size));
  CHECK(std::filesystem::file_size(out) <= size);
  CHECK(std::filesystem::file_size(out) > size * 9 / 10);
}

TEST_CASE("layerwise: one bitwidth per matrix") {
  const std::string out = test::temp_dir() + "/lw.sbits";
  quantize(out, "--bpw 4 --method layerwise");
  auto f = SbitsFile::open(out);
  CHECK(file_bpw(*f) <= 4.0);
  for (const TensorInfo& t : f->tensors()) {
    if (t.layout != kTiledLayoutId) continue;
    const TiledTensor tt = parse_tiled(t, f->bytes(t), "");
    for (uint8_t b : tt.bits) CHECK(b == tt.bits[0]);
  }
}

TEST_CASE("channel reordering folds into the weights: same logits, different tensors") {
  // 16-bit tiles everywhere isolate the permutation from quantization error.
  const std::string perm = test::temp_dir() + "/perm16.sbits", plain = test::temp_dir() + "/plain16.sbits";
  quantize(perm, "--bpw 17 --keep '*=16'");
  quantize(plain, "--bpw 17 --keep '*=16' --no-reorder");
  auto fp = SbitsFile::open(perm), fq = SbitsFile::open(plain);
  CHECK(fp->metadata().get_string("quantizer.reorder") != "none");
  CHECK(fq->metadata().get_string("quantizer.reorder") == "none");
  int differ = 0;
  for (const char* name : {"blk.0.attn_q", "blk.0.ffn_down", "blk.0.attn_norm", "tok_embd"}) {
    const TensorInfo* a = fp->find(name);
    const TensorInfo* b = fq->find(name);
    REQUIRE(a);
    REQUIRE(b);
    const auto x = fp->bytes(*a), y = fq->bytes(*b);
    differ += !std::equal(x.begin(), x.end(), y.begin(), y.end());
  }
  CHECK(differ == 4);  // every kind of tensor really was permuted
  const std::vector<float> lp = last_logits(perm), lq = last_logits(plain), lo = last_logits(stories_sbits());
  double max_diff = 0, max_abs = 0;
  for (size_t i = 0; i < lp.size(); ++i) {
    max_diff = std::max(max_diff, double(std::fabs(lp[i] - lq[i])));
    max_abs = std::max(max_abs, double(std::fabs(lq[i])));
  }
  MESSAGE("reordered vs plain f16 tiles: max logit difference ", max_diff, " (max |logit| ", max_abs, ")");
  CHECK(max_diff <= 1e-4 * max_abs + 1e-4);  // only the summation order differs
  for (size_t i = 0; i < lo.size(); ++i) CHECK(std::fabs(lo[i] - lq[i]) <= 0.02 * max_abs);  // f32 -> f16 tiles
}

TEST_CASE("--cache reuses the statistics: identical output; a damaged cache is ignored") {
  const std::string dir = test::temp_dir() + "/stats-cache";
  std::filesystem::remove_all(dir);
  const std::string a = test::temp_dir() + "/cache-a.sbits", b = test::temp_dir() + "/cache-b.sbits",
                    c = test::temp_dir() + "/cache-c.sbits";
  quantize(a, "--bpw 3.5 --cache " + dir);
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(dir)) files.push_back(e.path());
  REQUIRE(files.size() == 1);
  quantize(b, "--bpw 3.5 --cache " + dir);
  CHECK(test::read_text_file(a) == test::read_text_file(b));
  {  // flip one byte in the middle: the checksum must reject the file
    std::fstream f(files[0], std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(std::streamoff(std::filesystem::file_size(files[0]) / 2));
    f.put('\x5a');
  }
  quantize(c, "--bpw 3.5 --cache " + dir);
  CHECK(test::read_text_file(a) == test::read_text_file(c));
}

TEST_CASE("a Hugging Face directory is imported on the fly and the temporary file removed") {
  const std::string dir = test::temp_dir() + "/hf-in";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string out = dir + "/tl.sbits";
  std::string o, e;
  const int st = test::run_command(tool("quantizer/sbits-quantize") + " " + test::data_path("models/tech-llama-58m") +
                                       " -o " + out + " --bpw 4.3 --quantizer rtn --threads 2", &o, &e);
  INFO("stdout: ", o, "\nstderr: ", e);
  REQUIRE(st == 0);
  auto f = SbitsFile::open(out);
  CHECK(file_bpw(*f) <= 4.3);
  CHECK(f->metadata().get_string("general.architecture") == "llama");
  size_t files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) files += entry.is_regular_file();
  CHECK(files == 1);  // no import-*.tmp left beside the output
}

TEST_CASE("a budget below the layout's floor is refused with the floor") {
  std::string o, e;
  const int st = test::run_command(tool("quantizer/sbits-quantize") + " " + stories_sbits() + " -o " + test::temp_dir() +
                                       "/floor.sbits --calib " + calib() + " --calib-tokens 512 --bpw 2.0", &o, &e);
  CHECK(st == 1);
  CHECK(e.find("below this model's smallest file in the tiled layout") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(test::temp_dir() + "/floor.sbits"));
}

TEST_CASE("gptq with calibration runs and keeps the budget") {
  const std::string out = test::temp_dir() + "/gptq.sbits";
  quantize(out, "--bpw 3.5 --quantizer gptq");
  auto f = SbitsFile::open(out);
  CHECK(file_bpw(*f) <= 3.5);
  CHECK(f->metadata().get_string("quantizer.tile_quantizer") == "gptq");
}

}  // namespace sbits::quantizer
