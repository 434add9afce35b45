// The "tiled" layout (id 16, version 1): a weight matrix cut into R x C tiles, each with its own
// bitwidth (SBITS.md "Layout 16: tiled"). This header is the file-format side: parameters
// (aux), byte sizes, validation and parsing. The bit codecs and kernels that decode tiles live
// in kernels/quant/ (formats depends on nothing of ours, so the size rule is written here once
// more; tests/quantizer checks that both agree for every bitwidth and edge shape).
//
// Errors: FormatError naming the tensor, what was expected and what was found.
// Threading: pure functions; TiledTensor is a read-only view.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "formats/sbits_file.h"

namespace sbits {

inline constexpr uint32_t kTiledLayoutId = 16;
inline constexpr uint32_t kTiledLayoutVersion = 1;
inline constexpr uint32_t kTiledScaleF16Pairs = 1;  // scale_format 1: {f16 scale, f16 min}
inline constexpr uint32_t kTiledKeepF16Bits = 16;   // a tile of this "bitwidth" is plain f16

// aux of a tiled tensor (8 bytes, little-endian):
//   u16 tile_rows (R, 1..4096)   u16 tile_cols (C, multiple of 32, 32..4096)
//   u16 group (G, multiple of 32 dividing C)   u8 scale_format (1)   u8 reserved (0)
struct TiledParams {
  uint32_t tile_rows = 64;
  uint32_t tile_cols = 128;
  uint32_t group = 128;
  uint32_t scale_format = kTiledScaleF16Pairs;
};
inline constexpr size_t kTiledAuxBytes = 8;

std::vector<uint8_t> encode_tiled_aux(const TiledParams& p);
// Checks every field; `where` prefixes errors ("file: tensor blk.0.attn_q").
TiledParams decode_tiled_aux(std::span<const uint8_t> aux, const std::string& where);
// Throws FormatError (prefixed with `where`) unless R, C, G and the format are allowed.
void check_tiled_params(const TiledParams& p, const std::string& where);

// True for the bitwidths a tile may have: 2, 3, 4, 5, 6, 8 and 16 (f16).
bool tiled_bits_valid(uint32_t bits);

// Tile grid of a [rows, cols] matrix.
struct TiledGrid {
  uint64_t rows = 0, cols = 0;
  uint64_t tiles_r = 0, tiles_c = 0;
  uint64_t count() const { return tiles_r * tiles_c; }
};
TiledGrid tiled_grid(const TiledParams& p, uint64_t rows, uint64_t cols);

// Bytes of tile (tr, tc) at `bits` (a multiple of 16). Precondition: valid params and bits.
uint64_t tiled_tile_bytes(const TiledParams& p, const TiledGrid& g, uint64_t tr, uint64_t tc, uint32_t bits);
// Bytes of the bitwidth table at the start of the tensor: one byte per tile, padded to 16.
uint64_t tiled_table_bytes(const TiledGrid& g);
// Exact tensor size for a per-tile bitwidth table (tile (tr, tc) at tr * tiles_c + tc), or for
// one bitwidth everywhere. Throws FormatError on a bad bitwidth or a table of the wrong length.
uint64_t tiled_tensor_bytes(const TiledParams& p, uint64_t rows, uint64_t cols, std::span<const uint8_t> bits);
uint64_t tiled_tensor_bytes(const TiledParams& p, uint64_t rows, uint64_t cols, uint32_t bits);

// A validated tiled tensor inside its bytes.
struct TiledTensor {
  TiledParams params;
  TiledGrid grid;
  std::span<const uint8_t> bits;   // the table, one byte per tile
  std::vector<uint64_t> offsets;   // of each tile, from the start of the tensor bytes
  std::span<const uint8_t> bytes;  // the whole tensor
};

// Validates a tiled tensor completely (shape, aux, every bitwidth code, size == what the table
// implies) and returns its tile offsets. `where` prefixes errors.
TiledTensor parse_tiled(const TensorInfo& t, std::span<const uint8_t> bytes, const std::string& where);

namespace detail {
// The directory-level check (no tensor bytes needed): 2-D shape, aux, and a size within what
// some bitwidth table could give. Called from check_tensor_layout.
void check_tiled_info(const TensorInfo& t, const std::string& where);
}  // namespace detail

}  // namespace sbits
