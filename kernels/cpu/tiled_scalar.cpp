// Portable tiled kernels: the reference the AVX2 path is tested against. A tile row is
// dequantized with quant::dequantize_tile_row (the definition of the layout's values) and
// dotted with 8 independent partial sums, the AVX2 lane layout.
#include "kernels/cpu/tiled_kernels.h"

namespace sbits::kernels::cpu {
namespace {

constexpr int kLanes = 8;
constexpr int kMaxTileCols = 4096;  // formats/tiled_layout.h caps C here

void decode_tile(const quant::TileView& t, const float* x, int64_t ldx, int n, float* acc) {
  float w[kMaxTileCols];
  const int width = t.units * quant::kUnitCodes;  // a multiple of 32, so of kLanes
  for (int r = 0; r < t.rows; ++r) {
    quant::dequantize_tile_row(t, r, w);
    for (int j = 0; j < n; ++j) {
      const float* xj = x + j * ldx;
      float s[kLanes] = {};
      for (int c = 0; c < width; c += kLanes)
        for (int l = 0; l < kLanes; ++l) s[l] += w[c + l] * xj[c + l];
      for (int l = 0; l < kLanes; ++l) acc[(r * n + j) * kLanes + l] += s[l];
    }
  }
}

void dequantize_row(const quant::TileView& t, int r, float* out) { quant::dequantize_tile_row(t, r, out); }

constexpr TiledKernels kScalarTiled{CpuIsa::scalar, &decode_tile, &dequantize_row};

}  // namespace

const TiledKernels& scalar_tiled_kernels() { return kScalarTiled; }

}  // namespace sbits::kernels::cpu
