// SbitsWriter: atomic replacement, refusing to overwrite inputs, nothing left on failure.
#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>

#include "formats/sbits_file.h"
#include "tests/formats/test_util.h"
#include "tests/test_data.h"

using namespace sbits;
namespace fs = std::filesystem;

namespace {

std::vector<std::string> listing(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

const uint32_t kU8 = static_cast<uint32_t>(Layout::u8);

}  // namespace

TEST_CASE("writer: refuses to write over one of its inputs, also through links") {
  const std::string dir = test::temp_dir();
  const std::string in = dir + "/model.bin";
  test::write_file(in, {1, 2, 3});
  CHECK_THROWS_WITH_AS(SbitsWriter(in, {dir + "/other", in}), doctest::Contains("refusing to overwrite an input"), FormatError);
  fs::create_symlink(in, dir + "/link.sbits");
  CHECK_THROWS_AS(SbitsWriter(dir + "/link.sbits", {in}), FormatError);
  fs::create_hard_link(in, dir + "/hard.sbits");
  CHECK_THROWS_AS(SbitsWriter(dir + "/hard.sbits", {in}), FormatError);
  CHECK_THROWS_AS(SbitsWriter(dir + "/./model.bin", {in}), FormatError);
  CHECK(test::read_file(in) == std::vector<uint8_t>{1, 2, 3});
  CHECK(listing(dir) == std::vector<std::string>{"hard.sbits", "link.sbits", "model.bin"});
}

TEST_CASE("writer: destroyed without commit leaves nothing, and keeps an old file intact") {
  const std::string dir = test::temp_dir();
  {
    SbitsWriter w(dir + "/a.sbits", {});
    std::vector<uint8_t> d(1000, 7);
    w.add_tensor("t", kU8, 1, {1000}, d);
    CHECK(listing(dir).size() == 1);  // the temporary file
    CHECK(listing(dir)[0].rfind("a.sbits.tmp-", 0) == 0);
  }
  CHECK(listing(dir).empty());

  test::write_tiny_model(dir + "/b.sbits");
  auto before = test::read_file(dir + "/b.sbits");
  {
    SbitsWriter w(dir + "/b.sbits", {});
    std::vector<uint8_t> d(10, 1);
    w.add_tensor("t", kU8, 1, {10}, d);
  }
  CHECK(test::read_file(dir + "/b.sbits") == before);
  CHECK(listing(dir) == std::vector<std::string>{"b.sbits"});
}

TEST_CASE("writer: a failing call removes the temporary file and poisons the writer") {
  const std::string dir = test::temp_dir();
  SbitsWriter w(dir + "/c.sbits", {});
  std::vector<uint8_t> d(10, 1);
  w.add_tensor("ok", kU8, 1, {10}, d);
  SUBCASE("size does not match shape") {
    CHECK_THROWS_WITH_AS(w.add_tensor("bad", static_cast<uint32_t>(Layout::f32), 1, {10}, d),
                         doctest::Contains("expected 40 bytes for f32 [10], found 10"), FormatError);
  }
  SUBCASE("duplicate name") { CHECK_THROWS_WITH_AS(w.add_tensor("ok", kU8, 1, {10}, d), doctest::Contains("added twice"), FormatError); }
  SUBCASE("unknown layout") { CHECK_THROWS_WITH_AS(w.add_tensor("x", 99, 1, {10}, d), doctest::Contains("unknown layout id 99"), FormatError); }
  SUBCASE("zero dimension") { CHECK_THROWS_AS(w.add_tensor("x", kU8, 1, {10, 0}, d), FormatError); }
  SUBCASE("five dimensions") { CHECK_THROWS_AS(w.add_tensor("x", kU8, 1, {1, 1, 1, 1, 10}, d), FormatError); }
  SUBCASE("bad name") { CHECK_THROWS_AS(w.add_tensor("a b", kU8, 1, {10}, d), FormatError); }
  SUBCASE("producer throws") {
    CHECK_THROWS_WITH_AS(w.add_tensor_stream("s", kU8, 1, {10}, 10, [](const auto&) { throw FormatError("boom"); }),
                         "boom", FormatError);
  }
  SUBCASE("producer writes too little") {
    CHECK_THROWS_WITH_AS(w.add_tensor_stream("s", kU8, 1, {10}, 10, [&](const auto& sink) { sink(std::span(d).first(5)); }),
                         doctest::Contains("producer wrote 5"), FormatError);
  }
  CHECK(listing(dir).empty());
  CHECK_THROWS_WITH_AS(w.commit(), doctest::Contains("writer failed earlier"), FormatError);
  CHECK(listing(dir).empty());
}

TEST_CASE("writer: commit twice is refused; the committed file stays") {
  const std::string dir = test::temp_dir();
  SbitsWriter w(dir + "/d.sbits", {});
  w.commit();
  CHECK_THROWS_WITH_AS(w.commit(), doctest::Contains("already committed"), FormatError);
  CHECK(listing(dir) == std::vector<std::string>{"d.sbits"});
  CHECK(SbitsFile::open(dir + "/d.sbits")->tensors().empty());
  CHECK((fs::status(dir + "/d.sbits").permissions() & fs::perms::others_read) != fs::perms::none);
}

TEST_CASE("writer: unwritable destination directory is a clear error") {
  CHECK_THROWS_WITH_AS(SbitsWriter("/nonexistent-dir/x.sbits", {}), doctest::Contains("cannot create a temporary file"),
                       FormatError);
  CHECK_THROWS_WITH_AS(SbitsWriter(test::temp_dir(), {}), doctest::Contains("is a directory"), FormatError);
}
