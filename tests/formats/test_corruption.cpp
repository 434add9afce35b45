// One handcrafted file per kind of corruption, each checked through the library (message) and
// through sbits-inspect as a process (non-zero exit, one-line message, no signal).
#include <doctest/doctest.h>

#include <filesystem>

#include "formats/model_config.h"
#include "formats/sbits_file.h"
#include "formats/sbits_layout.h"
#include "tests/formats/test_util.h"
#include "tests/test_data.h"

using namespace sbits;
using test::get_at;
using test::put_at;

namespace {

std::vector<uint8_t> tiny_bytes() {
  static std::vector<uint8_t> bytes = [] {
    std::string p = test::temp_dir() + "/tiny.sbits";
    test::write_tiny_model(p);
    return test::read_file(p);
  }();
  return bytes;
}

// What sbits-inspect does: open, then check the model against its metadata.
void open_and_validate(const std::string& path, bool verify = false) {
  OpenOptions o;
  o.verify_tensors = verify;
  auto f = SbitsFile::open(path, o);
  validate_model_tensors(*f, ModelConfig::from_metadata(f->metadata()));
}

// Writes `bytes`, checks the library's message contains `expect`, then sbits-inspect's.
void expect_rejected(const std::vector<uint8_t>& bytes, const std::string& expect, bool verify = false) {
  const std::string path = test::temp_dir() + "/bad.sbits";
  test::write_file(path, bytes);
  CHECK_THROWS_WITH_AS(open_and_validate(path, verify), doctest::Contains(expect.c_str()), FormatError);
  std::string out, err;
  int rc = test::run_tool("sbits-inspect", path + (verify ? " --verify" : ""), &out, &err);
  CHECK(rc != 0);
  CHECK(rc < 128);  // exited, not killed by a signal
  CHECK(err.rfind("sbits-inspect: error: ", 0) == 0);
  CHECK(std::count(err.begin(), err.end(), '\n') == 1);
  CHECK_MESSAGE(err.find(expect) != std::string::npos, err);
}

}  // namespace

TEST_CASE("corruption: the untouched tiny model is accepted") {
  const std::string path = test::temp_dir() + "/good.sbits";
  test::write_file(path, tiny_bytes());
  open_and_validate(path, true);
  CHECK(test::run_tool("sbits-inspect", path + " --verify") == 0);
}

TEST_CASE("corruption: bad magic") {
  auto b = tiny_bytes();
  b[1] = 'X';
  expect_rejected(b, "not a .sbits file: expected magic 89 53 42 54 0d 0a 1a 0a, found 89 58");
}

TEST_CASE("corruption: magic damaged by a text-mode transfer") {
  auto b = tiny_bytes();
  b.erase(b.begin() + 4);  // CR LF -> LF
  expect_rejected(b, "damaged by a text-mode transfer");
  auto c = tiny_bytes();
  c[0] = 0x09;  // high bit stripped
  expect_rejected(c, "damaged by a text-mode transfer");
}

TEST_CASE("corruption: truncated file") {
  auto b = tiny_bytes();
  b.resize(b.size() - 100);
  expect_rejected(b, "(truncated)");
  b.resize(60);
  expect_rejected(b, "file is 60 bytes, smaller than the 128-byte header (truncated)");
  b.clear();
  expect_rejected(b, "file is 0 bytes");
}

TEST_CASE("corruption: bytes appended") {
  auto b = tiny_bytes();
  b.push_back(0);
  expect_rejected(b, "file size: header says");
}

TEST_CASE("corruption: tensor offset past the end of the data section") {
  auto b = tiny_bytes();
  auto e = test::directory_entries(b)[1];
  put_at<uint64_t>(b, e.offset, b.size() + 256 * 4);
  test::fix_checksum(b);
  expect_rejected(b, "expected inside the data section");
  // An offset + size that wraps around 2^64.
  put_at<uint64_t>(b, e.offset, 0xffffffffffffff00ull);
  test::fix_checksum(b);
  expect_rejected(b, "expected inside the data section");
}

TEST_CASE("corruption: section offsets past the end") {
  auto b = tiny_bytes();
  auto h = test::header_of(b);
  h.directory_offset = b.size() - 4;
  test::set_header(b, h);  // checksum left stale: the bounds check comes first
  expect_rejected(b, "directory section");
  h = test::header_of(tiny_bytes());
  h.metadata_size = ~0ull;
  b = tiny_bytes();
  test::set_header(b, h);
  expect_rejected(b, "metadata section");
}

TEST_CASE("corruption: overlapping tensors") {
  auto b = tiny_bytes();
  auto es = test::directory_entries(b);
  put_at<uint64_t>(b, es[2].offset, get_at<uint64_t>(b, es[1].offset));
  test::fix_checksum(b);
  expect_rejected(b, "overlap");
}

TEST_CASE("corruption: misaligned tensor") {
  auto b = tiny_bytes();
  auto e = test::directory_entries(b)[0];
  put_at<uint64_t>(b, e.offset, get_at<uint64_t>(b, e.offset) + 4);
  test::fix_checksum(b);
  expect_rejected(b, "expected a multiple of alignment 256");
}

TEST_CASE("corruption: bad header checksum") {
  auto b = tiny_bytes();
  auto h = test::header_of(b);
  b[h.metadata_offset + 20] ^= 0x40;
  expect_rejected(b, "header checksum: expected");
}

TEST_CASE("corruption: tensor bytes changed (found by --verify)") {
  auto b = tiny_bytes();
  auto e = test::directory_entries(b)[2];
  b[get_at<uint64_t>(b, e.offset) + 5] ^= 1;
  expect_rejected(b, "tensor blk.0.attn_q: checksum: expected", true);
}

TEST_CASE("corruption: unknown major version; newer minor accepted") {
  auto b = tiny_bytes();
  auto h = test::header_of(b);
  h.version_major = 2;
  test::set_header(b, h);
  test::fix_checksum(b);
  expect_rejected(b, "format version 2.0, this reader supports 1.x");

  auto c = tiny_bytes();
  h = test::header_of(c);
  h.version_minor = 7;
  h.flags = 0x00010000;  // an optional feature bit: ignored
  test::set_header(c, h);
  test::fix_checksum(c);
  const std::string path = test::temp_dir() + "/minor.sbits";
  test::write_file(path, c);
  CHECK(SbitsFile::open(path)->version_minor() == 7);
}

TEST_CASE("corruption: unknown required flag") {
  auto b = tiny_bytes();
  auto h = test::header_of(b);
  h.flags = 1;
  test::set_header(b, h);
  test::fix_checksum(b);
  expect_rejected(b, "unknown required feature flags 0x00000001");
}

TEST_CASE("corruption: unknown layout and layout version") {
  auto b = tiny_bytes();
  auto e = test::directory_entries(b)[2];
  REQUIRE(e.name == "blk.0.attn_q");
  put_at<uint32_t>(b, e.layout, 200);
  test::fix_checksum(b);
  expect_rejected(b, "tensor blk.0.attn_q: unknown layout id 200 (this reader knows f32, f16, bf16, u8, i32");
  b = tiny_bytes();
  put_at<uint32_t>(b, e.layout_version, 2);
  test::fix_checksum(b);
  expect_rejected(b, "tensor blk.0.attn_q: layout f32 version 2, this reader supports versions 1..1");
}

TEST_CASE("corruption: shape and size disagree") {
  auto b = tiny_bytes();
  auto e = test::directory_entries(b)[2];
  put_at<uint64_t>(b, e.dims, get_at<uint64_t>(b, e.dims) + 1);
  test::fix_checksum(b);
  expect_rejected(b, "tensor blk.0.attn_q: expected 288 bytes for f32 [9, 8], found 256");
}

TEST_CASE("corruption: zero dimension, too many dimensions, element count overflow") {
  auto b = tiny_bytes();
  auto e = test::directory_entries(b)[3];
  put_at<uint64_t>(b, e.dims, 0);
  test::fix_checksum(b);
  expect_rejected(b, "dimension 0 is 0");
  b = tiny_bytes();
  b[e.ndim] = 5;
  test::fix_checksum(b);
  expect_rejected(b, "ndim: expected 1..4, found 5");
  b = tiny_bytes();
  put_at<uint64_t>(b, e.dims, 1ull << 62);
  test::fix_checksum(b);
  expect_rejected(b, "overflows 64 bits");
}

TEST_CASE("corruption: metadata that lies about the model's dimensions") {
  auto b = tiny_bytes();
  put_at<uint64_t>(b, test::metadata_value_pos(b, "llama.dim"), 16);  // tensors say 8
  test::fix_checksum(b);
  expect_rejected(b, "tok_embd: expected shape [16, 16] from llama.vocab_size=16, llama.dim=16, found [16, 8]");
}

TEST_CASE("corruption: big-endian marker") {
  auto b = tiny_bytes();
  const uint8_t be[4] = {1, 2, 3, 4};
  std::memcpy(b.data() + 8, be, 4);
  test::fix_checksum(b);
  expect_rejected(b, "file is big-endian; this reader supports little-endian files");
}

TEST_CASE("corruption: metadata counts and types") {
  auto b = tiny_bytes();
  auto h = test::header_of(b);
  put_at<uint64_t>(b, h.metadata_offset, 1ull << 60);  // rejected before allocating
  test::fix_checksum(b);
  expect_rejected(b, "entry count 1152921504606846976 cannot fit in");

  b = tiny_bytes();
  b[test::metadata_value_pos(b, "llama.dim") - 1] = 9;  // the type byte
  test::fix_checksum(b);
  expect_rejected(b, "key llama.dim: unknown value type 9");

  b = tiny_bytes();
  b[test::metadata_value_pos(b, "llama.tied_embeddings")] = 2;
  test::fix_checksum(b);
  expect_rejected(b, "bool: expected 0 or 1, found 2");

  b = tiny_bytes();  // keys out of order: swap the first letters of general.name -> "feneral"
  b[test::metadata_value_pos(b, "general.name") - 1 - 12] = 'z';
  test::fix_checksum(b);
  expect_rejected(b, "expected keys unique and sorted");
}

TEST_CASE("corruption: directory count and tensor_count") {
  auto b = tiny_bytes();
  auto h = test::header_of(b);
  put_at<uint64_t>(b, h.directory_offset, ~0ull);
  test::fix_checksum(b);
  expect_rejected(b, "tensor count 18446744073709551615 cannot fit in");
  b = tiny_bytes();
  h.tensor_count += 1;
  test::set_header(b, h);
  test::fix_checksum(b);
  expect_rejected(b, "tensors (header tensor_count), found");
}

TEST_CASE("corruption: duplicate tensor names") {
  auto b = tiny_bytes();
  auto es = test::directory_entries(b);
  // blk.0.attn_k -> blk.0.attn_q (same length)
  size_t name_pos = es[3].layout - es[3].name.size();
  REQUIRE(es[3].name == "blk.0.attn_k");
  b[name_pos + es[3].name.size() - 1] = 'q';
  test::fix_checksum(b);
  expect_rejected(b, "blk.0.attn_q: name appears twice");
}

TEST_CASE("corruption: missing file and directories are one-line errors") {
  std::string err;
  int rc = test::run_tool("sbits-inspect", test::temp_dir() + "/nope.sbits", nullptr, &err);
  CHECK(rc == 1);
  CHECK(err.find("cannot open: No such file or directory") != std::string::npos);
  rc = test::run_tool("sbits-inspect", test::temp_dir(), nullptr, &err);
  CHECK(rc == 1);
  CHECK(err.find("not a regular file") != std::string::npos);
}
