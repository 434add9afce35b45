// The "tiled" layout on disk (formats/tiled_layout.h): size rule, agreement with the kernels'
// tile geometry, reader validation with one handcrafted corruption per check.
#include <doctest/doctest.h>
#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iterator>
#include <numeric>

#include "formats/sbits_layout.h"
#include "formats/tiled_layout.h"
#include "kernels/quant/tiled.h"
#include "tests/test_data.h"

namespace sbits {
namespace {

const uint8_t kBits[] = {2, 3, 4, 5, 6, 8, 16};

std::vector<uint8_t> read_all(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}
void write_all(const std::string& p, const std::vector<uint8_t>& b) {
  std::ofstream f(p, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}

// A tiled tensor whose codes are all zero but whose table and size are consistent.
std::vector<uint8_t> blank_tiled(const TiledParams& p, uint64_t rows, uint64_t cols, const std::vector<uint8_t>& bits) {
  std::vector<uint8_t> b(tiled_tensor_bytes(p, rows, cols, bits), 0);
  std::copy(bits.begin(), bits.end(), b.begin());
  return b;
}

std::vector<uint8_t> mixed_bits(size_t n) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = kBits[(i * 5 + 1) % 7];
  return v;
}

// Writes a file with one tiled tensor "w" and returns its path.
std::string write_tiled_file(const TiledParams& p, uint64_t rows, uint64_t cols, const std::vector<uint8_t>& bytes) {
  const std::string path = test::temp_dir() + "/t.sbits";
  SbitsWriter w(path, {});
  w.add_tensor("w", kTiledLayoutId, kTiledLayoutVersion, {rows, cols}, bytes, encode_tiled_aux(p));
  w.commit();
  return path;
}

void fix_checksum(std::vector<uint8_t>& f) {
  detail::Header h;
  std::memcpy(&h, f.data(), sizeof h);
  h.checksum = detail::header_checksum(h, {f.data() + h.metadata_offset, h.metadata_size},
                                       {f.data() + h.directory_offset, h.directory_size});
  std::memcpy(f.data(), &h, sizeof h);
}

// Position of the tensor's aux bytes in the file (the directory is the last section).
size_t aux_pos(const std::vector<uint8_t>& f, const TiledParams& p) {
  const std::vector<uint8_t> aux = encode_tiled_aux(p);
  auto it = std::search(f.end() - 200, f.end(), aux.begin(), aux.end());
  REQUIRE(it != f.end());
  return size_t(it - f.begin());
}

std::string open_error(const std::string& path) {
  try {
    SbitsFile::open(path);
  } catch (const FormatError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("tiled size rule: uniform, per-tile table and the kernels' tile geometry agree") {
  const TiledParams params[] = {{64, 128, 128}, {64, 128, 64}, {64, 128, 32}, {16, 32, 32}, {128, 256, 128}, {7, 96, 32}};
  const uint64_t dims[][2] = {{1, 1}, {64, 128}, {172, 64}, {64, 172}, {65, 129}, {300, 1000}, {3, 31}};
  for (const TiledParams& p : params) {
    for (const auto& d : dims) {
      const TiledGrid g = tiled_grid(p, d[0], d[1]);
      for (uint8_t b : kBits) {
        INFO("R ", p.tile_rows, " C ", p.tile_cols, " G ", p.group, " dims ", d[0], "x", d[1], " bits ", int(b));
        const std::vector<uint8_t> table(g.count(), b);
        const uint64_t sum = tiled_tensor_bytes(p, d[0], d[1], table);
        CHECK(sum == tiled_tensor_bytes(p, d[0], d[1], uint32_t(b)));
        uint64_t k = tiled_table_bytes(g);
        for (uint64_t tr = 0; tr < g.tiles_r; ++tr) {
          for (uint64_t tc = 0; tc < g.tiles_c; ++tc) {
            const uint64_t rows = std::min<uint64_t>(p.tile_rows, d[0] - tr * p.tile_rows);
            const uint64_t cols = std::min<uint64_t>(p.tile_cols, d[1] - tc * p.tile_cols);
            const uint64_t tb = tiled_tile_bytes(p, g, tr, tc, b);
            CHECK(tb == kernels::quant::tile_bytes(int64_t(rows), int64_t(cols), p.group, b));
            CHECK(tb % 16 == 0);
            k += tb;
          }
        }
        CHECK(k == sum);
      }
    }
  }
}

TEST_CASE("tiled overhead: a full 64 x 128 tile costs b + 32/G bits per weight") {
  const TiledParams p{64, 128, 128};
  for (uint8_t b : {2, 3, 4, 5, 6, 8}) {
    const TiledGrid g = tiled_grid(p, 64, 128);
    CHECK(tiled_tile_bytes(p, g, 0, 0, b) * 8 == 64 * 128 * b + 64 * 32);
  }
  // stories260K's ffn_down [64, 172]: the second column tile stores 64 of its 44 columns.
  const TiledGrid g = tiled_grid(p, 64, 172);
  CHECK(tiled_tile_bytes(p, g, 0, 1, 4) == 64 * 64 / 2 + 64 * 4);
}

TEST_CASE("tiled tensors round-trip through the writer and the reader") {
  const TiledParams p{64, 128, 64};
  const uint64_t rows = 172, cols = 300;
  const TiledGrid g = tiled_grid(p, rows, cols);
  const std::vector<uint8_t> bits = mixed_bits(g.count());
  const std::vector<uint8_t> bytes = blank_tiled(p, rows, cols, bits);
  const std::string path = write_tiled_file(p, rows, cols, bytes);
  auto f = SbitsFile::open(path, {.verify_tensors = true});
  const TensorInfo& t = f->get("w");
  CHECK(std::string(layout_name(t.layout)) == "tiled");
  const TiledTensor tt = parse_tiled(t, f->bytes(t), "");
  CHECK(tt.params.tile_rows == 64);
  CHECK(tt.params.group == 64);
  CHECK(std::equal(tt.bits.begin(), tt.bits.end(), bits.begin(), bits.end()));
  CHECK(tt.offsets[0] == tiled_table_bytes(g));
  for (size_t i = 1; i < tt.offsets.size(); ++i) {
    CHECK(tt.offsets[i] == tt.offsets[i - 1] + tiled_tile_bytes(p, g, (i - 1) / g.tiles_c, (i - 1) % g.tiles_c,
                                                                  bits[i - 1]));
  }
}

TEST_CASE("tiled corruption: the reader names what is wrong") {
  const TiledParams p{64, 128, 128};
  const uint64_t rows = 100, cols = 200;
  const TiledGrid g = tiled_grid(p, rows, cols);
  const std::vector<uint8_t> bits = mixed_bits(g.count());
  const std::vector<uint8_t> good = blank_tiled(p, rows, cols, bits);
  const std::string path = write_tiled_file(p, rows, cols, good);
  const std::vector<uint8_t> file = read_all(path);
  detail::Header header;
  std::memcpy(&header, file.data(), sizeof header);
  const uint64_t tensor_at = header.data_offset;  // the only tensor starts the data section

  SUBCASE("a bitwidth code that is not a tiled bitwidth") {
    std::vector<uint8_t> f = file;
    f[tensor_at + 1] = 7;  // tile (0, 1): same size class is irrelevant, the code is checked first
    write_all(path, f);
    const std::string e = open_error(path);
    CHECK(e.find("tile (0, 1): bitwidth code 7") != std::string::npos);
  }
  SUBCASE("a table that implies another size") {
    std::vector<uint8_t> f = file;
    f[tensor_at] = f[tensor_at] == 2 ? 3 : 2;
    write_all(path, f);
    CHECK(open_error(path).find("the tile table implies") != std::string::npos);
  }
  SUBCASE("non-zero table padding") {
    std::vector<uint8_t> f = file;
    f[tensor_at + g.count()] = 1;
    write_all(path, f);
    CHECK(open_error(path).find("table padding") != std::string::npos);
  }
  SUBCASE("aux: group that does not divide tile_cols") {
    std::vector<uint8_t> f = file;
    const uint16_t bad = 96;
    std::memcpy(&f[aux_pos(f, p) + 4], &bad, 2);
    fix_checksum(f);
    write_all(path, f);
    CHECK(open_error(path).find("group: expected a multiple of 32 that divides tile_cols 128, found 96") !=
          std::string::npos);
  }
  SUBCASE("aux: reserved byte") {
    std::vector<uint8_t> f = file;
    f[aux_pos(f, p) + 7] = 1;
    fix_checksum(f);
    write_all(path, f);
    CHECK(open_error(path).find("reserved byte 7") != std::string::npos);
  }
  SUBCASE("aux: scale format") {
    std::vector<uint8_t> f = file;
    f[aux_pos(f, p) + 6] = 2;
    fix_checksum(f);
    write_all(path, f);
    CHECK(open_error(path).find("scale_format") != std::string::npos);
  }
}

TEST_CASE("tiled: the writer refuses what the directory alone shows is wrong") {
  const TiledParams p{64, 128, 128};
  const std::string path = test::temp_dir() + "/bad.sbits";
  SbitsWriter w(path, {});
  const std::vector<uint8_t> bytes(16 + 64, 0);
  SUBCASE("1-D shape") {
    CHECK_THROWS_WITH_AS(w.add_tensor("v", kTiledLayoutId, 1, {64}, bytes, encode_tiled_aux(p)),
                         doctest::Contains("expected a 2-D shape"), FormatError);
  }
  SUBCASE("a size no table could give") {
    CHECK_THROWS_WITH_AS(w.add_tensor("v", kTiledLayoutId, 1, {64, 128}, bytes, encode_tiled_aux(p)),
                         doctest::Contains("bytes for 1 tiles, found 80"), FormatError);
  }
  SUBCASE("missing aux") {
    CHECK_THROWS_WITH_AS(w.add_tensor("v", kTiledLayoutId, 1, {64, 128}, bytes), doctest::Contains("aux: expected 8 bytes"),
                         FormatError);
  }
  SUBCASE("unknown layout version") {
    CHECK_THROWS_WITH_AS(w.add_tensor("v", kTiledLayoutId, 2, {64, 128}, bytes, encode_tiled_aux(p)),
                         doctest::Contains("layout tiled version 2"), FormatError);
  }
}

TEST_CASE("tiled params: every rule is enforced") {
  CHECK_NOTHROW(check_tiled_params({64, 128, 128}, "p"));
  CHECK_NOTHROW(check_tiled_params({1, 32, 32}, "p"));
  CHECK_THROWS_AS(check_tiled_params({0, 128, 128}, "p"), FormatError);
  CHECK_THROWS_AS(check_tiled_params({4097, 128, 128}, "p"), FormatError);
  CHECK_THROWS_AS(check_tiled_params({64, 100, 32}, "p"), FormatError);
  CHECK_THROWS_AS(check_tiled_params({64, 128, 256}, "p"), FormatError);
  CHECK_THROWS_AS(check_tiled_params({64, 128, 16}, "p"), FormatError);
  CHECK_THROWS_AS(tiled_tensor_bytes(TiledParams{}, 10, 10, uint32_t(7)), FormatError);
  CHECK_THROWS_AS(tiled_tensor_bytes(TiledParams{}, 10, 10, std::vector<uint8_t>(2, 4)), FormatError);
}

}  // namespace sbits
