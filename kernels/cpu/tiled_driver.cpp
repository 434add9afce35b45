// The loops around the per-tile kernels: one strip of tile rows for decode, one weight row
// for embed and prefill. Shared by every ISA.
#include <algorithm>
#include <cstring>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/tiled_kernels.h"

namespace sbits::kernels::cpu {
namespace {
constexpr int kMaxTileCols = 4096;  // formats/tiled_layout.h caps C here
constexpr int kLanes = 8;           // partial sums per output (TiledKernels::decode_tile)
}  // namespace

const TiledKernels& tiled_kernels_for(CpuIsa isa) {
  if (isa == CpuIsa::avx2 && avx2_tiled_kernels()) return *avx2_tiled_kernels();
  return scalar_tiled_kernels();
}

size_t tiled_decode_scratch_floats(const quant::TiledDesc& d) {
  return size_t(kDecodeMaxRows) * (size_t(d.tile_rows) * kLanes + size_t(d.tile_cols));
}

void tiled_decode_strip(const TiledKernels& k, const quant::TiledDesc& d, int64_t tr, const float* x, int n,
                        float* y, int64_t ldy, bool accumulate, float* scratch) {
  const int64_t r0 = tr * d.tile_rows;
  const int rows = int(std::min<int64_t>(d.tile_rows, d.rows - r0));
  float* acc = scratch;                                                  // [rows][n][kLanes]
  float* xpad = scratch + size_t(d.tile_rows) * kDecodeMaxRows * kLanes;  // [n][32 * units], edge tile
  std::fill(acc, acc + rows * n * kLanes, 0.0f);
  for (int64_t tc = 0; tc < d.tiles_c; ++tc) {
    const quant::TileView t = quant::tile_view(d, tr, tc);
    const int64_t c0 = tc * d.tile_cols;
    const int width = t.units * quant::kUnitCodes;
    const float* xs = x + c0;
    int64_t ldx = d.cols;
    if (t.cols != width) {
      // The last column tile stores up to 31 padding columns: give them zero inputs, so the
      // kernel needs no per-column test (padding decodes to `min`, finite).
      for (int j = 0; j < n; ++j) {
        std::memcpy(xpad + j * width, x + j * d.cols + c0, size_t(t.cols) * sizeof(float));
        std::fill(xpad + j * width + t.cols, xpad + (j + 1) * width, 0.0f);
      }
      xs = xpad;
      ldx = width;
    }
    k.decode_tile(t, xs, ldx, n, acc);
  }
  for (int j = 0; j < n; ++j) {
    float* yj = y + j * ldy + r0;
    for (int r = 0; r < rows; ++r) {
      const float* a = acc + (r * n + j) * kLanes;
      const float sum = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
      yj[r] = (accumulate ? yj[r] : 0.0f) + sum;
    }
  }
}

void tiled_dequantize_row(const TiledKernels& k, const quant::TiledDesc& d, int64_t row, float* out) {
  const int64_t tr = row / d.tile_rows;
  const int r = int(row % d.tile_rows);
  float tmp[kMaxTileCols];
  for (int64_t tc = 0; tc < d.tiles_c; ++tc) {
    const quant::TileView t = quant::tile_view(d, tr, tc);
    float* o = out + tc * d.tile_cols;
    if (t.cols == t.units * quant::kUnitCodes) {
      k.dequantize_row(t, r, o);
    } else {
      k.dequantize_row(t, r, tmp);
      std::memcpy(o, tmp, size_t(t.cols) * sizeof(float));
    }
  }
}

}  // namespace sbits::kernels::cpu
