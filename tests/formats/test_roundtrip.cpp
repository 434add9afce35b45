// Round trips through SbitsWriter and SbitsFile: every layout, every metadata type, alignment.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <limits>

#include "formats/model_config.h"
#include "formats/sbits_file.h"
#include "tests/formats/test_util.h"
#include "tests/test_data.h"

using namespace sbits;

namespace {

std::vector<uint8_t> pattern(size_t n, uint8_t salt) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(i * 31 + salt);
  return v;
}

}  // namespace

TEST_CASE("round trip: every plain layout, shapes of 1 to 4 dimensions") {
  const std::string path = test::temp_dir() + "/layouts.sbits";
  struct Case {
    const char* name;
    Layout layout;
    std::vector<uint64_t> shape;
  };
  const std::vector<Case> cases = {{"a_f32", Layout::f32, {3, 5}},       {"b_f16", Layout::f16, {7}},
                                   {"c_bf16", Layout::bf16, {2, 3, 4}},  {"d_u8", Layout::u8, {1, 1, 1, 13}},
                                   {"e_i32", Layout::i32, {300}},        {"f_f32_big", Layout::f32, {1000}}};
  std::vector<std::vector<uint8_t>> data;
  {
    SbitsWriter w(path, {});
    uint8_t salt = 0;
    for (const Case& c : cases) {
      uint64_t n = 1;
      for (uint64_t d : c.shape) n *= d;
      data.push_back(pattern(plain_layout_bytes(c.layout, n), salt++));
      w.add_tensor(c.name, static_cast<uint32_t>(c.layout), 1, c.shape, data.back());
    }
    w.commit();
  }
  OpenOptions opt;
  opt.verify_tensors = true;
  auto f = SbitsFile::open(path, opt);
  CHECK(f->version_major() == 1);
  CHECK(f->version_minor() == 0);
  CHECK(f->alignment() == 256);
  CHECK(f->file_size() == std::filesystem::file_size(path));
  REQUIRE(f->tensors().size() == cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    const TensorInfo& t = f->tensors()[i];  // directory keeps the order of add_tensor
    CHECK(t.name == cases[i].name);
    CHECK(t.layout == static_cast<uint32_t>(cases[i].layout));
    CHECK(t.layout_version == 1);
    CHECK(t.shape == cases[i].shape);
    CHECK(t.offset % 256 == 0);
    auto b = f->bytes(t);
    CHECK(std::vector<uint8_t>(b.begin(), b.end()) == data[i]);
    CHECK(&f->get(t.name) == &t);
    CHECK(reinterpret_cast<uintptr_t>(b.data()) % 256 == 0);  // usable in place for GPU upload
  }
  CHECK(f->find("missing") == nullptr);
  CHECK_THROWS_WITH_AS(f->get("missing"), doctest::Contains("tensor missing: not found"), FormatError);
}

TEST_CASE("round trip: every metadata type, extreme values, empty values") {
  const std::string path = test::temp_dir() + "/meta.sbits";
  const std::string utf8 = "h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80\ttab\nnewline";
  std::vector<uint8_t> blob(70000);
  for (size_t i = 0; i < blob.size(); ++i) blob[i] = static_cast<uint8_t>(i);
  {
    SbitsWriter w(path, {});
    Metadata& m = w.metadata();
    m.set("t.u64", uint64_t{0xffffffffffffffffull});
    m.set("t.u64_zero", uint64_t{0});
    m.set("t.i64", int64_t{std::numeric_limits<int64_t>::min()});
    m.set("t.i64_pos", int64_t{42});
    m.set("t.f64", 3.141592653589793);
    m.set("t.f64_inf", -std::numeric_limits<double>::infinity());
    m.set("t.f64_nan", std::numeric_limits<double>::quiet_NaN());
    m.set("t.bool_t", true);
    m.set("t.bool_f", false);
    m.set("t.string", utf8);
    m.set("t.string_empty", std::string());
    m.set("t.bytes", blob);
    m.set("t.bytes_empty", std::vector<uint8_t>());
    m.set("~", std::string("last printable key"));
    w.commit();  // a file without tensors is valid
  }
  auto f = SbitsFile::open(path);
  const Metadata& m = f->metadata();
  CHECK(m.entries().size() == 14);
  CHECK(m.get_u64("t.u64") == 0xffffffffffffffffull);
  CHECK(m.get_u64("t.u64_zero") == 0);
  CHECK(m.get_i64("t.i64") == std::numeric_limits<int64_t>::min());
  CHECK(m.get_u64("t.i64_pos") == 42);  // a non-negative i64 reads as u64
  CHECK(m.get_f64("t.f64") == 3.141592653589793);
  CHECK(m.get_f64("t.f64_inf") == -std::numeric_limits<double>::infinity());
  CHECK(std::isnan(m.get_f64("t.f64_nan")));
  CHECK(m.get_bool("t.bool_t") == true);
  CHECK(m.get_bool("t.bool_f") == false);
  CHECK(m.get_string("t.string") == utf8);
  CHECK(m.get_string("t.string_empty").empty());
  CHECK(m.get_bytes("t.bytes") == blob);
  CHECK(m.get_bytes("t.bytes_empty").empty());
  CHECK(m.has("~"));
  CHECK(f->tensors().empty());
}

TEST_CASE("metadata: typed getters name the key and the type found") {
  Metadata m;
  m.set("a", std::string("x"));
  m.set("neg", int64_t{-3});
  CHECK_THROWS_WITH_AS(m.get_u64("a"), "metadata a: expected u64, found string", FormatError);
  CHECK_THROWS_WITH_AS(m.get_u64("neg"), doctest::Contains("expected a non-negative integer, found -3"), FormatError);
  CHECK_THROWS_WITH_AS(m.get_bool("nope"), "metadata nope: missing (expected bool)", FormatError);
  CHECK_THROWS_WITH_AS(m.get_bytes("a"), "metadata a: expected bytes, found string", FormatError);
  CHECK_THROWS_AS(m.set("has space", true), FormatError);
  CHECK_THROWS_AS(m.set("", true), FormatError);
  CHECK_THROWS_AS(m.set("bad.utf8", std::string("\xc3(")), FormatError);
  CHECK_THROWS_AS(m.set("overlong", std::string("\xc0\x80")), FormatError);
  CHECK_THROWS_AS(m.set("surrogate", std::string("\xed\xa0\x80")), FormatError);
}

TEST_CASE("writer: set_alignment after the first tensor is refused") {
  const std::string path = test::temp_dir() + "/align.sbits";
  SbitsWriter w(path, {});
  w.set_alignment(4096);
  auto a = pattern(10, 1), b = pattern(5000, 2);
  w.add_tensor("a", static_cast<uint32_t>(Layout::u8), 1, {10}, a);
  w.add_tensor("b", static_cast<uint32_t>(Layout::u8), 1, {5000}, b);
  CHECK_THROWS_AS(w.set_alignment(512), FormatError);  // after the first tensor: refused, writer failed
  auto f_missing = std::filesystem::exists(path);
  CHECK_FALSE(f_missing);
}

TEST_CASE("round trip: alignment 4096 file opens with aligned offsets") {
  const std::string path = test::temp_dir() + "/align2.sbits";
  {
    SbitsWriter w(path, {});
    w.set_alignment(4096);
    auto a = pattern(10, 1), b = pattern(5000, 2);
    w.add_tensor("a", static_cast<uint32_t>(Layout::u8), 1, {10}, a);
    w.add_tensor("b", static_cast<uint32_t>(Layout::u8), 1, {5000}, b);
    w.commit();
  }
  auto f = SbitsFile::open(path, {true});
  CHECK(f->alignment() == 4096);
  for (const TensorInfo& t : f->tensors()) CHECK(t.offset % 4096 == 0);
}

TEST_CASE("round trip: streamed tensors equal add_tensor") {
  const std::string path = test::temp_dir() + "/stream.sbits";
  auto data = pattern(10000, 9);
  {
    SbitsWriter w(path, {});
    w.add_tensor_stream("s", static_cast<uint32_t>(Layout::u8), 1, {10000}, data.size(), [&](const auto& sink) {
      for (size_t i = 0; i < data.size(); i += 999) sink(std::span(data).subspan(i, std::min<size_t>(999, data.size() - i)));
    });
    w.commit();
  }
  auto f = SbitsFile::open(path, {true});
  auto b = f->bytes(f->get("s"));
  CHECK(std::vector<uint8_t>(b.begin(), b.end()) == data);
}

TEST_CASE("model config: metadata round trip and tensor set") {
  const std::string path = test::temp_dir() + "/tiny.sbits";
  ModelConfig c = test::tiny_config();
  c.rope = RopeConvention::interleaved;
  c.rope_theta = 500000.0;
  c.norm_eps = 1e-6;
  c.bos_id = -1;
  test::write_tiny_model(path, c);
  auto f = SbitsFile::open(path);
  ModelConfig r = ModelConfig::from_metadata(f->metadata());
  CHECK(r.dim == c.dim);
  CHECK(r.ffn_dim == c.ffn_dim);
  CHECK(r.n_kv_heads == 1);
  CHECK(r.head_dim == 4);
  CHECK(r.rope == RopeConvention::interleaved);
  CHECK(r.rope_theta == 500000.0);
  CHECK(r.norm_eps == 1e-6);
  CHECK(r.bos_id == -1);
  CHECK(r.tied_embeddings == false);
  validate_model_tensors(*f, r);
  CHECK(expected_tensors(r).size() == 1 + 9 + 1 + 1);
  r.tied_embeddings = true;  // now "output" is one tensor too many
  CHECK_THROWS_WITH_AS(validate_model_tensors(*f, r), doctest::Contains("output: unexpected tensor"), FormatError);
}

TEST_CASE("model config: unknown architecture and bad values are named") {
  Metadata m;
  test::tiny_config().to_metadata(m);
  m.set("general.architecture", std::string("gpt2"));
  CHECK_THROWS_WITH_AS(ModelConfig::from_metadata(m), "metadata general.architecture = \"gpt2\"; supported: llama", FormatError);
  test::tiny_config().to_metadata(m);
  m.set("llama.rope.convention", std::string("sideways"));
  CHECK_THROWS_WITH_AS(ModelConfig::from_metadata(m), doctest::Contains("llama.rope.convention"), FormatError);
  test::tiny_config().to_metadata(m);
  m.set("llama.n_kv_heads", uint64_t{3});
  CHECK_THROWS_WITH_AS(ModelConfig::from_metadata(m), doctest::Contains("llama.n_kv_heads=3: expected a divisor of llama.n_heads=2"), FormatError);
  test::tiny_config().to_metadata(m);
  m.set("tokenizer.eos_id", int64_t{16});
  CHECK_THROWS_WITH_AS(ModelConfig::from_metadata(m), doctest::Contains("tokenizer.eos_id"), FormatError);
  test::tiny_config().to_metadata(m);
  m.set("llama.dim", std::string("8"));
  CHECK_THROWS_WITH_AS(ModelConfig::from_metadata(m), "metadata llama.dim: expected u64, found string", FormatError);
}

TEST_CASE("layout names and sizes") {
  CHECK(std::string(layout_name(1)) == "f32");
  CHECK(std::string(layout_name(3)) == "bf16");
  CHECK(layout_name(17) == nullptr);
  CHECK(plain_layout_bytes(Layout::f16, 10) == 20);
  CHECK(plain_layout_bytes(Layout::i32, 3) == 12);
  CHECK_THROWS_AS(plain_layout_bytes(Layout::f32, 1ull << 63), FormatError);
}
