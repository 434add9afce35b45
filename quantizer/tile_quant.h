// Per-tile quantizers for the tiled layout (formats/SBITS.md "Layout 16: tiled"): they turn one
// tile's float weights into codes plus an f16 {scale, min} per group of G columns of each row,
// w ~ scale * q + min, q in [0, 2^b - 1].
//
//  rtn  round to nearest on the group's [min, max] range.
//  mse  searches the clipping range (shrink factors of [min, max], where to shrink from) and
//       refits scale and min by weighted least squares for each candidate's codes, minimising
//       sum_i h_i (w_i - w^_i)^2 with h_i = diag(X^T X) of input column i (1 without
//       calibration). The RTN range is one of the candidates, so mse is never worse than rtn
//       in that weighted error.
//  gptq error feedback inside the tile (GPTQ, Frantar et al. 2022): columns are quantized in
//       order and each column's error, scaled by the Cholesky factor of H^-1 (H = X^T X of the
//       tile's columns, damped), is pushed onto the columns not yet quantized, with lazy
//       updates per block of 32 columns. Each group's scale/min come from the mse search on the
//       group's weights as updated so far.
//
// Scale and min are rounded to f16 before codes are chosen, so the error measured here is the
// error of the stored tile. Errors: QuantizerError with context (f16 overflow, non-positive-
// definite H even after damping). Threading: pure functions of their inputs.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace sbits::quantizer {

class QuantizerError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class TileMethod { rtn, mse, gptq };
const char* tile_method_name(TileMethod m);
// "rtn" | "mse" | "gptq"; throws QuantizerError listing the valid names otherwise.
TileMethod parse_tile_method(const std::string& name);

struct MseOptions {
  int shrink_steps = 20;        // shrink factors 1, 1 - step, ..., down to min_shrink
  float min_shrink = 0.5f;
  int refit_rounds = 2;         // weighted least-squares refits of the best candidate
};

struct GptqOptions {
  double damp = 0.01;           // lambda = damp * mean(diag H), raised x10 while H is not PD
  int block = 32;               // columns per lazy batch update
};

// The upper Cholesky factor U of (H + lambda I)^-1 for one column tile (U^T U = H^-1), computed
// once and shared by every tile of that column range.
struct GptqFactor {
  int n = 0;
  std::vector<double> u;        // [n][n], row-major, upper triangle
  double damp_used = 0.0;       // the damping that made H positive definite
};
// H is [n][n] row-major with leading dimension ldh (floats). Columns whose H_ii is 0 (inputs
// that were always zero) get H_ii = 1 so they cannot stop the factorization.
GptqFactor make_gptq_factor(const float* h, int64_t ldh, int n, const GptqOptions& opt = {});

// One tile's input. Rows are `ldw` floats apart; h (optional) has `cols` entries.
struct TileInput {
  const float* w = nullptr;
  int64_t ldw = 0;
  int rows = 0, cols = 0;
  int group = 128;
  int bits = 4;                 // 2, 3, 4, 5, 6 or 8
  const float* h = nullptr;     // per-column importance (diag of X^T X); null: all 1
  const GptqFactor* gptq = nullptr;  // required by TileMethod::gptq, for these `cols` columns
};

struct TileCodes {
  int rows = 0, cols = 0, group = 0, groups = 0;
  std::vector<uint8_t> q;        // [rows][cols]
  std::vector<uint16_t> scale;   // [rows][groups], f16 bits
  std::vector<uint16_t> min;     // [rows][groups], f16 bits
  float value(int r, int c) const;  // the dequantized weight, as the kernels compute it
};

TileCodes quantize_tile(const TileInput& in, TileMethod method, const MseOptions& mse = {},
                        const GptqOptions& gptq = {});

// sum_r sum_c h_c (w - w^)^2 over the tile (h = 1 when null), in double.
double weighted_error(const TileInput& in, const TileCodes& codes);

// One group of n weights (exposed for tests): the f16-rounded {scale, min} chosen by rtn or mse.
struct GroupFit {
  uint16_t scale_f16 = 0, min_f16 = 0;
  float scale = 0.0f, min = 0.0f;   // the decoded f16 values
};
GroupFit fit_group_rtn(const float* w, int n, int bits);
GroupFit fit_group_mse(const float* w, const float* h, int n, int bits, const MseOptions& opt = {});
// Nearest code of each weight on the fit's grid; returns sum h_i (w_i - w^_i)^2.
double quantize_group(const float* w, const float* h, int n, int bits, const GroupFit& fit, uint8_t* q);

namespace detail {
TileCodes quantize_tile_gptq(const TileInput& in, const MseOptions& mse, const GptqOptions& opt);  // gptq.cpp
}  // namespace detail

}  // namespace sbits::quantizer
