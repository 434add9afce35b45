// Sensitivity: how much quantizing one tile at one bitwidth is predicted to raise the loss.
//
// Every sensitivity model here has one factored form, so the allocator does not care where the
// numbers came from. For a weight W [rows = out, cols = in]:
//     predicted dL(tile, b) = sum_i r_i * sum_j c_j * (Q_b(W)_ij - W_ij)^2
//  proxy  c_j = E[x_j^2] over the calibration tokens (x = the layer's input), r_i = 1 / sum_ij
//         c_j W_ij^2: the tile's share of the layer's relative output error, so that layers of
//         different scale compare. The token embedding's input is one-hot: r_k = (count_k + 1)
//         / (T + vocab) (never-seen tokens keep a floor), c_j = 1, normalised the same way.
//  grad   r, c from gradients (quantizer/grad_stats.h): a diagonal, Kronecker-factored Fisher.
//
// Threading: tile_error_table spreads tiles over `threads`; results do not depend on it.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "formats/tiled_layout.h"
#include "quantizer/calibration.h"
#include "quantizer/tile_quant.h"

namespace sbits::quantizer {

// The candidate bitwidths of a tile, cheapest first; index into ErrorRow.
inline constexpr std::array<int, 7> kTileBits = {2, 3, 4, 5, 6, 8, 16};
inline constexpr int kTileChoices = int(kTileBits.size());
int tile_choice_of_bits(int bits);  // index in kTileBits; throws QuantizerError for others

struct TensorSensitivity {
  std::vector<float> r;  // [rows]
  std::vector<float> c;  // [cols]
};

// The proxy for tensor `name` holding w [rows][cols] (f32, already permuted like `stats`).
// Throws QuantizerError when the statistics do not cover this tensor.
TensorSensitivity proxy_sensitivity(const std::string& name, const float* w, int64_t rows, int64_t cols,
                                    const CalibrationStats& stats);

// Multiplies r so that sum_ij r_i c_j W_ij^2 == 1 (the relative-error normalisation).
void normalize_sensitivity(TensorSensitivity& s, const float* w, int64_t rows, int64_t cols);

// Predicted dL of every tile of one tensor at every candidate bitwidth: [tile][choice], tiles in
// the layout's order (tr * tiles_c + tc). 16 bits (f16 tiles) counts as 0.
using ErrorRow = std::array<double, kTileChoices>;
std::vector<ErrorRow> tile_error_table(const float* w, int64_t rows, int64_t cols, const TensorSensitivity& s,
                                       const TiledParams& p, TileMethod method, int threads);

}  // namespace sbits::quantizer
