// Quantizing whole tensors into the tiled layout, and decoding them back.
#include "quantizer/tiled_tensor.h"

#include <cmath>
#include <cstring>

#include "formats/dtype_convert.h"
#include "kernels/quant/tiled.h"
#include "quantizer/parallel.h"

namespace sbits::quantizer {
namespace kq = kernels::quant;
namespace {

TensorInfo tiled_info(const TiledParams& p, int64_t rows, int64_t cols, uint64_t size) {
  TensorInfo t;
  t.name = "tiled";
  t.layout = kTiledLayoutId;
  t.layout_version = kTiledLayoutVersion;
  t.shape = {uint64_t(rows), uint64_t(cols)};
  t.size = size;
  t.aux = encode_tiled_aux(p);
  return t;
}

std::string tile_name(uint64_t tr, uint64_t tc) {
  return "tile (" + std::to_string(tr) + ", " + std::to_string(tc) + ")";
}

// The Cholesky factor of each column tile's block of X^T X, for the column tiles that have at
// least one quantized (not f16) tile.
std::vector<GptqFactor> gptq_factors(const TiledGrid& g, const TiledParams& p, std::span<const uint8_t> bits,
                                     const InputStats& stats, const GptqOptions& opt, int threads) {
  if (!stats.h && !stats.h_blocks) {
    throw QuantizerError("gptq needs the inputs' X^T X (calibration statistics); without calibration use the "
                         "rtn or mse quantizer");
  }
  std::vector<GptqFactor> f(g.tiles_c);
  parallel_for(int64_t(g.tiles_c), threads, [&](int64_t tc) {
    bool needed = false;
    for (uint64_t tr = 0; tr < g.tiles_r; ++tr) needed |= bits[tr * g.tiles_c + uint64_t(tc)] != kTiledKeepF16Bits;
    if (!needed) return;
    const uint64_t c0 = uint64_t(tc) * p.tile_cols, n = std::min<uint64_t>(p.tile_cols, g.cols - c0);
    const uint64_t cc = p.tile_cols;
    f[tc] = stats.h_blocks ? make_gptq_factor(stats.h_blocks + uint64_t(tc) * cc * cc, int64_t(cc), int(n), opt)
                           : make_gptq_factor(stats.h + c0 * g.cols + c0, int64_t(g.cols), int(n), opt);
  });
  return f;
}

}  // namespace

void pack_tile(const TileCodes& codes, int bits, uint8_t* out) {
  const int units = int(kq::units_for_cols(codes.cols));
  const int p0 = kq::plane0_bits(bits), p1 = kq::plane1_bits(bits);
  uint8_t* plane0 = out;
  uint8_t* plane1 = out + kq::tile_plane_bytes(codes.rows, units, p0);
  uint8_t* scales = plane1 + kq::tile_plane_bytes(codes.rows, units, p1);
  const bool ok = kq::dispatch_codec(bits, [&](auto codec) {
    using Codec = decltype(codec);
    for (int r = 0; r < codes.rows; ++r) {
      for (int u = 0; u < units; ++u) {
        uint8_t q[kq::kUnitCodes] = {};  // padding columns stay code 0
        const int c0 = u * kq::kUnitCodes, n = std::min(kq::kUnitCodes, codes.cols - c0);
        std::memcpy(q, codes.q.data() + size_t(r) * codes.cols + c0, size_t(n));
        uint32_t w0[8] = {}, w1[8] = {};
        Codec::pack(q, w0, w1);
        const size_t unit = size_t(r) * units + size_t(u);
        std::memcpy(plane0 + unit * Codec::kPlane0 * 4, w0, Codec::kPlane0 * 4);
        if (Codec::kPlane1) std::memcpy(plane1 + unit * Codec::kPlane1 * 4, w1, Codec::kPlane1 * 4);
      }
    }
  });
  if (!ok) throw QuantizerError("pack_tile: bitwidth " + std::to_string(bits) + " has no codec");
  for (size_t i = 0; i < codes.scale.size(); ++i) {
    std::memcpy(scales + 4 * i, &codes.scale[i], 2);
    std::memcpy(scales + 4 * i + 2, &codes.min[i], 2);
  }
}

void pack_tile_f16(const float* w, int64_t ldw, int rows, int cols, uint8_t* out) {
  const int width = int(kq::units_for_cols(cols)) * kq::kUnitCodes;
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < cols; ++c) {
      const float v = w[size_t(r) * size_t(ldw) + size_t(c)];
      const uint16_t h = f32_to_f16(v);
      if (std::isfinite(v) && !std::isfinite(kq::half_to_float(h))) {
        throw QuantizerError("weight " + std::to_string(v) + " at row " + std::to_string(r) + ", column " +
                             std::to_string(c) + " of the tile overflows f16 (16-bit tiles are f16)");
      }
      std::memcpy(out + 2 * (size_t(r) * width + size_t(c)), &h, 2);
    }
  }
}

std::vector<uint8_t> quantize_tensor(const float* w, int64_t rows, int64_t cols, std::span<const uint8_t> tile_bits,
                                     const TensorQuantOptions& opt, const InputStats& stats) {
  const TiledParams& p = opt.params;
  const uint64_t total = tiled_tensor_bytes(p, uint64_t(rows), uint64_t(cols), tile_bits);  // checks bits
  const TiledGrid g = tiled_grid(p, uint64_t(rows), uint64_t(cols));
  std::vector<uint8_t> out(total, 0);
  std::memcpy(out.data(), tile_bits.data(), tile_bits.size());
  std::vector<uint64_t> offsets(g.count());
  uint64_t off = tiled_table_bytes(g);
  for (uint64_t i = 0; i < g.count(); ++i) {
    offsets[i] = off;
    off += tiled_tile_bytes(p, g, i / g.tiles_c, i % g.tiles_c, tile_bits[i]);
  }
  std::vector<GptqFactor> factors;
  if (opt.method == TileMethod::gptq) factors = gptq_factors(g, p, tile_bits, stats, opt.gptq, opt.threads);
  std::vector<float> hdiag;  // gptq without an explicit diag: take it from X^T X
  if (!stats.hdiag && stats.h) {
    hdiag.resize(size_t(cols));
    for (int64_t c = 0; c < cols; ++c) hdiag[size_t(c)] = stats.h[size_t(c) * size_t(cols) + size_t(c)];
  }
  const float* h = stats.hdiag ? stats.hdiag : hdiag.empty() ? nullptr : hdiag.data();
  parallel_for(int64_t(g.tiles_r), opt.threads, [&](int64_t tr) {
    for (uint64_t tc = 0; tc < g.tiles_c; ++tc) {
      const uint64_t i = uint64_t(tr) * g.tiles_c + tc, r0 = uint64_t(tr) * p.tile_rows, c0 = tc * p.tile_cols;
      TileInput in;
      in.w = w + r0 * uint64_t(cols) + c0;
      in.ldw = cols;
      in.rows = int(std::min<uint64_t>(p.tile_rows, uint64_t(rows) - r0));
      in.cols = int(std::min<uint64_t>(p.tile_cols, uint64_t(cols) - c0));
      in.group = int(p.group);
      in.bits = tile_bits[i];
      in.h = h ? h + c0 : nullptr;
      in.gptq = factors.empty() ? nullptr : &factors[tc];
      try {
        if (in.bits == int(kTiledKeepF16Bits)) {
          pack_tile_f16(in.w, in.ldw, in.rows, in.cols, out.data() + offsets[i]);
        } else {
          pack_tile(quantize_tile(in, opt.method, opt.mse, opt.gptq), in.bits, out.data() + offsets[i]);
        }
      } catch (const std::exception& e) {
        throw QuantizerError(tile_name(uint64_t(tr), tc) + ": " + e.what());
      }
    }
  });
  parse_tiled(tiled_info(p, rows, cols, total), out, "quantize_tensor: ");  // what a reader will check
  return out;
}

std::vector<uint8_t> quantize_tensor_uniform(const float* w, int64_t rows, int64_t cols, int bits,
                                             const TensorQuantOptions& opt, const InputStats& stats) {
  const TiledGrid g = tiled_grid(opt.params, uint64_t(rows), uint64_t(cols));
  const std::vector<uint8_t> table(g.count(), uint8_t(bits));
  return quantize_tensor(w, rows, cols, table, opt, stats);
}

std::vector<float> dequantize_tensor(const TiledParams& params, int64_t rows, int64_t cols,
                                     std::span<const uint8_t> bytes) {
  std::vector<uint8_t> copy;
  if (reinterpret_cast<uintptr_t>(bytes.data()) % 16 != 0) {  // the codecs read aligned words
    copy.assign(bytes.begin(), bytes.end());
    bytes = copy;
  }
  const TiledTensor t = parse_tiled(tiled_info(params, rows, cols, bytes.size()), bytes, "dequantize_tensor: ");
  kq::TiledDesc d;
  d.rows = rows;
  d.cols = cols;
  d.tile_rows = int32_t(params.tile_rows);
  d.tile_cols = int32_t(params.tile_cols);
  d.group = int32_t(params.group);
  d.tiles_r = int64_t(t.grid.tiles_r);
  d.tiles_c = int64_t(t.grid.tiles_c);
  d.bits = t.bits.data();
  d.offsets = t.offsets.data();
  d.data = bytes.data();
  std::vector<float> out(size_t(rows) * size_t(cols)), row(params.tile_cols);
  for (int64_t tr = 0; tr < d.tiles_r; ++tr) {
    for (int64_t tc = 0; tc < d.tiles_c; ++tc) {
      const kq::TileView v = kq::tile_view(d, tr, tc);
      for (int r = 0; r < v.rows; ++r) {
        kq::dequantize_tile_row(v, r, row.data());
        std::memcpy(&out[size_t(tr * d.tile_rows + r) * size_t(cols) + size_t(tc * d.tile_cols)], row.data(),
                    size_t(v.cols) * sizeof(float));
      }
    }
  }
  return out;
}

}  // namespace sbits::quantizer
