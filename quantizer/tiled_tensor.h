// Whole tensors in the tiled layout: quantize a float matrix into the layout's bytes with one
// bitwidth per tile, and decode them back (for tests and for measuring errors).
//
// Threading: quantize_tensor spreads strips of tile rows over `threads` threads; the result
// does not depend on the thread count. Errors: QuantizerError / FormatError with context.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "formats/tiled_layout.h"
#include "quantizer/tile_quant.h"

namespace sbits::quantizer {

struct TensorQuantOptions {
  TiledParams params;             // R, C, G (defaults 64 x 128, G = 128)
  TileMethod method = TileMethod::mse;
  MseOptions mse;
  GptqOptions gptq;
  int threads = 1;
};

// Optional calibration statistics of the tensor's inputs (cols = in features).
struct InputStats {
  const float* hdiag = nullptr;   // [cols]: diag(X^T X), the per-column importance
  const float* h = nullptr;       // [cols][cols]: X^T X, needed by TileMethod::gptq
  // Or only its diagonal blocks, which is all gptq uses (error feedback stays inside a tile):
  // [tiles_c][C][C], block tc holding X^T X of columns tc*C .. tc*C + C - 1 (zero-padded).
  const float* h_blocks = nullptr;
};

// W is [rows][cols] row-major f32; tile_bits has tiles_r * tiles_c entries (tile (tr, tc) at
// tr * tiles_c + tc), each 2, 3, 4, 5, 6, 8 or 16. Returns the tensor bytes (validated with
// parse_tiled before returning) whose aux is encode_tiled_aux(opt.params).
std::vector<uint8_t> quantize_tensor(const float* w, int64_t rows, int64_t cols, std::span<const uint8_t> tile_bits,
                                     const TensorQuantOptions& opt, const InputStats& stats = {});

// One bitwidth everywhere.
std::vector<uint8_t> quantize_tensor_uniform(const float* w, int64_t rows, int64_t cols, int bits,
                                             const TensorQuantOptions& opt, const InputStats& stats = {});

// The matrix a tiled tensor holds, [rows][cols] f32, exactly as the kernels dequantize it.
std::vector<float> dequantize_tensor(const TiledParams& params, int64_t rows, int64_t cols,
                                     std::span<const uint8_t> bytes);

// Packs one tile's codes (or, for 16 bits, its f16 values) into `out`, which has exactly
// tiled_tile_bytes(...) zeroed bytes at a 16-byte aligned address.
void pack_tile(const TileCodes& codes, int bits, uint8_t* out);
void pack_tile_f16(const float* w, int64_t ldw, int rows, int cols, uint8_t* out);

}  // namespace sbits::quantizer
