// Whole tensors: what quantize_tile chose is what dequantize_tensor (the kernels' decoding of the
// packed bytes) gives back, for mixed bitwidths and awkward shapes; results do not depend on
// the thread count.
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <vector>

#include "formats/dtype_convert.h"
#include "quantizer/tiled_tensor.h"

namespace sbits::quantizer {
namespace {

std::vector<float> random_matrix(int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 0.05f);
  std::vector<float> w(size_t(rows * cols));
  for (float& x : w) x = nd(rng);
  return w;
}

std::vector<uint8_t> mixed_table(const TiledGrid& g, uint32_t seed) {
  static const uint8_t bits[] = {2, 3, 4, 5, 6, 8, 16};
  std::mt19937 rng(seed);
  std::vector<uint8_t> t(g.count());
  for (auto& b : t) b = bits[rng() % 7];
  return t;
}

}  // namespace

TEST_CASE("quantize_tensor -> dequantize_tensor gives exactly the tile quantizer's values") {
  const struct {
    int64_t rows, cols;
    TiledParams p;
  } cases[] = {{172, 300, {64, 128, 128}}, {64, 172, {64, 128, 64}}, {33, 64, {16, 32, 32}}, {130, 257, {64, 128, 32}}};
  for (const auto& k : cases) {
    INFO("k.rows=", k.rows, " ", "k.cols=", k.cols, " ", "k.p.group=", k.p.group);
    const std::vector<float> w = random_matrix(k.rows, k.cols, 5);
    const TiledGrid g = tiled_grid(k.p, uint64_t(k.rows), uint64_t(k.cols));
    const std::vector<uint8_t> table = mixed_table(g, 9);
    TensorQuantOptions opt;
    opt.params = k.p;
    opt.method = TileMethod::rtn;
    const std::vector<uint8_t> bytes = quantize_tensor(w.data(), k.rows, k.cols, table, opt);
    CHECK(bytes.size() == tiled_tensor_bytes(k.p, uint64_t(k.rows), uint64_t(k.cols), table));
    const std::vector<float> back = dequantize_tensor(k.p, k.rows, k.cols, bytes);
    for (uint64_t tr = 0; tr < g.tiles_r; ++tr) {
      for (uint64_t tc = 0; tc < g.tiles_c; ++tc) {
        const int64_t r0 = int64_t(tr * k.p.tile_rows), c0 = int64_t(tc * k.p.tile_cols);
        TileInput in;
        in.w = &w[size_t(r0 * k.cols + c0)];
        in.ldw = k.cols;
        in.rows = int(std::min<int64_t>(k.p.tile_rows, k.rows - r0));
        in.cols = int(std::min<int64_t>(k.p.tile_cols, k.cols - c0));
        in.group = int(k.p.group);
        in.bits = table[tr * g.tiles_c + tc];
        TileCodes codes;
        if (in.bits != 16) codes = quantize_tile(in, TileMethod::rtn);
        int bad = 0;
        for (int r = 0; r < in.rows; ++r) {
          for (int c = 0; c < in.cols; ++c) {
            const float got = back[size_t((r0 + r) * k.cols + c0 + c)];
            const float want = in.bits == 16 ? f16_to_f32(f32_to_f16(in.w[r * k.cols + c])) : codes.value(r, c);
            bad += got != want;
          }
        }
        INFO("tr=", tr, " ", "tc=", tc, " ", "int(in.bits)=", int(in.bits));
        CHECK(bad == 0);
      }
    }
  }
}

TEST_CASE("quantize_tensor is deterministic and independent of the thread count") {
  const int64_t rows = 200, cols = 384;
  const std::vector<float> w = random_matrix(rows, cols, 3);
  std::vector<float> x(size_t(256) * cols), h(size_t(cols) * cols, 0.0f);
  std::mt19937 rng(4);
  std::normal_distribution<float> nd;
  for (float& v : x) v = nd(rng);
  for (int64_t a = 0; a < cols; ++a)
    for (int64_t b = 0; b < cols; ++b) {
      double s = 0;
      for (int i = 0; i < 256; ++i) s += double(x[size_t(i * cols + a)]) * x[size_t(i * cols + b)];
      h[size_t(a * cols + b)] = float(s);
    }
  InputStats stats;
  stats.h = h.data();
  for (TileMethod m : {TileMethod::rtn, TileMethod::mse, TileMethod::gptq}) {
    CAPTURE(tile_method_name(m));
    TensorQuantOptions opt;
    opt.method = m;
    opt.threads = 1;
    const auto a = quantize_tensor_uniform(w.data(), rows, cols, 3, opt, stats);
    opt.threads = 3;
    const auto b = quantize_tensor_uniform(w.data(), rows, cols, 3, opt, stats);
    const auto c = quantize_tensor_uniform(w.data(), rows, cols, 3, opt, stats);
    CHECK(a == b);
    CHECK(b == c);
  }
}

TEST_CASE("quantize_tensor: errors carry the tile and the cause") {
  std::vector<float> w(size_t(64) * 128, 0.01f);
  w[size_t(70) * 1 + 64 * 0] = 1e6f;  // row 0, column 70: tile (0, 0)
  TensorQuantOptions opt;
  CHECK_THROWS_WITH_AS(quantize_tensor_uniform(w.data(), 64, 128, 16, opt), doctest::Contains("tile (0, 0)"),
                       QuantizerError);
  CHECK_THROWS_WITH_AS(quantize_tensor_uniform(w.data(), 64, 128, 4, opt), doctest::Contains("f16"), QuantizerError);
  opt.method = TileMethod::gptq;
  CHECK_THROWS_WITH_AS(quantize_tensor_uniform(w.data(), 64, 128, 4, opt), doctest::Contains("calibration"),
                       QuantizerError);
  CHECK_THROWS_AS(quantize_tensor_uniform(w.data(), 64, 128, 7, opt), FormatError);
}

}  // namespace sbits::quantizer
