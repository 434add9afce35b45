#include "quantizer/sensitivity.h"

#include <cmath>

#include "formats/model_config.h"
#include "quantizer/parallel.h"

namespace sbits::quantizer {

int tile_choice_of_bits(int bits) {
  for (int i = 0; i < kTileChoices; ++i)
    if (kTileBits[size_t(i)] == bits) return i;
  throw QuantizerError("tile bitwidth " + std::to_string(bits) + " is not one of 2, 3, 4, 5, 6, 8, 16");
}

void normalize_sensitivity(TensorSensitivity& s, const float* w, int64_t rows, int64_t cols) {
  double total = 0.0;
  for (int64_t i = 0; i < rows; ++i) {
    double row = 0.0;
    for (int64_t j = 0; j < cols; ++j) {
      const double x = w[i * cols + j];
      row += double(s.c[size_t(j)]) * x * x;
    }
    total += double(s.r[size_t(i)]) * row;
  }
  // A matrix of zeros (or inputs that were always zero) cannot lose anything: keep it at 0.
  const double scale = total > 0.0 && std::isfinite(total) ? 1.0 / total : 0.0;
  for (float& r : s.r) r = float(double(r) * scale);
}

TensorSensitivity proxy_sensitivity(const std::string& name, const float* w, int64_t rows, int64_t cols,
                                    const CalibrationStats& stats) {
  TensorSensitivity s;
  if (name == tensor_name_embedding()) {
    if (stats.token_counts.size() != size_t(rows))
      throw QuantizerError("sensitivity: " + name + " has " + std::to_string(rows) + " rows but the calibration saw a " +
                           std::to_string(stats.token_counts.size()) + "-token vocabulary");
    s.r.resize(size_t(rows));
    const double denom = double(stats.tokens) + double(rows);
    for (int64_t k = 0; k < rows; ++k) s.r[size_t(k)] = float((double(stats.token_counts[size_t(k)]) + 1.0) / denom);
    s.c.assign(size_t(cols), 1.0f);
  } else {
    const InputMoments* in = stats.input_of(name);
    if (!in) throw QuantizerError("sensitivity: no calibration statistics for tensor " + name);
    if (in->width != cols)
      throw QuantizerError("sensitivity: tensor " + name + " has " + std::to_string(cols) +
                           " input columns, its calibration input has " + std::to_string(in->width));
    s.c = in->mean_sq();
    s.r.assign(size_t(rows), 1.0f);
  }
  normalize_sensitivity(s, w, rows, cols);
  return s;
}

std::vector<ErrorRow> tile_error_table(const float* w, int64_t rows, int64_t cols, const TensorSensitivity& s,
                                       const TiledParams& p, TileMethod method, int threads) {
  const TiledGrid g = tiled_grid(p, uint64_t(rows), uint64_t(cols));
  // GPTQ's gain comes from the off-diagonal XᵀX this error measure ignores; the table uses the
  // mse quantizer for it, which is what gptq starts each group from.
  const TileMethod table_method = method == TileMethod::rtn ? TileMethod::rtn : TileMethod::mse;
  std::vector<ErrorRow> table(g.count());
  parallel_for(int64_t(g.count()), threads, [&](int64_t t) {
    const uint64_t tr = uint64_t(t) / g.tiles_c, tc = uint64_t(t) % g.tiles_c;
    TileInput in;
    const uint64_t r0 = tr * p.tile_rows, c0 = tc * p.tile_cols;
    in.w = w + r0 * uint64_t(cols) + c0;
    in.ldw = cols;
    in.rows = int(std::min<uint64_t>(p.tile_rows, uint64_t(rows) - r0));
    in.cols = int(std::min<uint64_t>(p.tile_cols, uint64_t(cols) - c0));
    in.group = int(p.group);
    in.h = s.c.data() + c0;
    ErrorRow& row = table[size_t(t)];
    for (int k = 0; k < kTileChoices; ++k) {
      if (kTileBits[size_t(k)] == int(kTiledKeepF16Bits)) {
        row[size_t(k)] = 0.0;
        continue;
      }
      in.bits = kTileBits[size_t(k)];
      const TileCodes codes = quantize_tile(in, table_method);
      double err = 0.0;
      for (int r = 0; r < in.rows; ++r) {
        double e = 0.0;
        for (int c = 0; c < in.cols; ++c) {
          const double d = double(in.w[size_t(r) * size_t(cols) + size_t(c)]) - double(codes.value(r, c));
          e += double(in.h[c]) * d * d;
        }
        err += double(s.r[r0 + size_t(r)]) * e;
      }
      row[size_t(k)] = err;
    }
  });
  return table;
}

}  // namespace sbits::quantizer
