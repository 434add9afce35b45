// CPU kernels for tiled mixed-bitwidth weights (kernels/quant/tiled.h), one table per ISA like
// cpu_kernels.h. The backend (cpu_tiled.cpp) walks the tile grid and threads; these functions
// do the work inside one tile.
//
// Decode (n <= kDecodeMaxRows rows of x): codes are unpacked and dequantized in registers
// (w = scale * q + min, one FMA) and dotted with all n rows of x while in registers, so each
// weight byte is read once. Prefill: rows are dequantized to f32 scratch and multiplied by the
// backend's f32 matmul, which is FMA-bound there.
//
// Numerics: dequantized weights are bit-identical to quant::dequantize_tile_row (the same FMA);
// only the summation order of the dot products differs from a plain f32 matmul.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/backend.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/quant/tiled.h"

namespace sbits::kernels::cpu {

struct TiledKernels {
  CpuIsa isa = CpuIsa::scalar;
  // acc[(r * n + j) * 8 + l] += lane l of dot(row r of the tile, x row j) for r < t.rows,
  // j < n (1..8): 8 partial sums per output, added across the tiles of a strip and reduced
  // once at its end (a horizontal sum per tile row would cost as much as decoding its 128
  // weights). x rows are ldx floats apart and hold 32 * t.units columns (the caller zero-pads
  // an edge tile's x).
  void (*decode_tile)(const quant::TileView& t, const float* x, int64_t ldx, int n, float* acc) = nullptr;
  // out[0 .. 32 * t.units) = row r of the tile as f32 (padding columns included).
  void (*dequantize_row)(const quant::TileView& t, int r, float* out) = nullptr;
};

const TiledKernels& scalar_tiled_kernels();
// nullptr when the AVX2 kernels are not compiled in (non-x86 builds).
const TiledKernels* avx2_tiled_kernels();
const TiledKernels& tiled_kernels_for(CpuIsa isa);

// A tiled weight uploaded to the CPU: its own copy of the tile table and offsets (the
// HostWeight's description may be temporary), the codes used in place.
class CpuTiledWeight final : public Weight {
 public:
  quant::TiledDesc desc;  // bits/offsets point into the vectors below
  std::vector<uint8_t> bits;
  std::vector<uint64_t> offsets;
};

// Row `row` of a tiled weight as f32: out[0 .. cols).
void tiled_dequantize_row(const TiledKernels& k, const quant::TiledDesc& d, int64_t row, float* out);

// One strip of tile rows (tr) for all n rows of x ([n, d.cols], row-major), n <= kDecodeMaxRows:
// y[j * ldy + o] (+)= x[j] . W[o] for the strip's rows o. `scratch` holds
// tiled_decode_scratch_floats(d) floats.
void tiled_decode_strip(const TiledKernels& k, const quant::TiledDesc& d, int64_t tr, const float* x, int n,
                        float* y, int64_t ldy, bool accumulate, float* scratch);
size_t tiled_decode_scratch_floats(const quant::TiledDesc& d);

// Rows per prefill chunk: dequantized to f32 scratch [kTiledPrefillRows, cols] and multiplied
// by the f32 kernel. 16 rows of a 4096-wide matrix are 256 KiB, which stays in L2.
constexpr int kTiledPrefillRows = 16;

}  // namespace sbits::kernels::cpu
