// The tiled mixed-bitwidth weight ("tiled" layout v1, formats/SBITS.md) as kernels see it.
//
// A weight W [rows x cols] (rows = out features) is cut into tiles of R rows x C columns; each
// tile has one bitwidth b in {2, 3, 4, 5, 6, 8} (codes with a scale and a min per group of G
// columns of each row: w = scale * q + min) or 16 (plain f16). Edge tiles are smaller: they
// store only their valid rows, and their columns rounded up to a 32-column pack unit, so
// padding never costs more than 31 columns of one column of tiles.
//
// One tile, bitwidth b < 16, rows_t valid rows, units_t = ceil(cols_t / 32) pack units per row,
// groups_t = ceil(32 * units_t / G) groups per row (every region starts 16-byte aligned):
//
//   +-------------------------------------------------------------------------------+
//   | plane 0: rows_t x units_t x P0 u32    word k of (row r, unit u) at            |
//   |          ((r * units_t + u) * P0 + k)          (zero-padded to 16 bytes)      |
//   | plane 1: rows_t x units_t x P1 u32    same order; absent when P1 = 0          |
//   | scales:  rows_t x groups_t x {f16 scale, f16 min}   (zero-padded to 16 bytes) |
//   +-------------------------------------------------------------------------------+
//   b = 16:  rows_t x (32 * units_t) f16, row-major (padding columns are zero)
//
// Plane widths P0/P1 and the bit order inside the words: codec_plane.h, codec_bB.h.
// Why planes in separate regions: a GPU thread that owns one (row, unit) loads its plane-0
// words with one aligned 16-byte load for b = 4/5/6 (8 bytes for b = 2/3, 2 x 16 for b = 8)
// instead of a 12- or 20-byte record that no vector load fits. Why the scale next to the min:
// one aligned 32-bit load gives the f16x2 pair a half2 FMA wants.
//
// A full tile of R = 64, C = 128 is 64 rows x 16 * b bytes of codes (16-byte aligned for
// every b) plus 64 * (C / G) * 4 bytes of scales.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "kernels/quant/codec.h"

namespace sbits::kernels::quant {

// A parsed tiled weight. Owns nothing: `bits` and `offsets` are filled by whoever parsed the
// file (the engine, from formats/tiled_layout.h), `data` points at the tensor bytes.
struct TiledDesc {
  int64_t rows = 0, cols = 0;          // logical shape (padding excluded)
  int32_t tile_rows = 0;               // R
  int32_t tile_cols = 0;               // C, a multiple of 32
  int32_t group = 0;                   // G, a multiple of 32 that divides C
  int64_t tiles_r = 0, tiles_c = 0;    // ceil(rows / R), ceil(cols / C)
  const uint8_t* bits = nullptr;       // [tiles_r * tiles_c], tile (tr, tc) at tr * tiles_c + tc
  const uint64_t* offsets = nullptr;   // [tiles_r * tiles_c] byte offset of each tile from data
  const uint8_t* data = nullptr;       // tensor bytes, 16-byte aligned
};

SBITS_HD constexpr uint64_t pad16(uint64_t n) { return (n + 15) & ~uint64_t(15); }

SBITS_HD constexpr uint64_t tile_plane_bytes(int64_t rows, int64_t units, int plane_bits) {
  return pad16(uint64_t(rows) * uint64_t(units) * 4u * uint64_t(plane_bits));
}
SBITS_HD constexpr uint64_t tile_scale_bytes(int64_t rows, int64_t groups) {
  return pad16(uint64_t(rows) * uint64_t(groups) * 4u);
}
SBITS_HD constexpr int64_t units_for_cols(int64_t cols) { return (cols + kUnitCodes - 1) / kUnitCodes; }
SBITS_HD constexpr int64_t groups_for_units(int64_t units, int64_t group) {
  return (units * kUnitCodes + group - 1) / group;
}

// Bytes of one tile (always a multiple of 16); 0 for an invalid bitwidth.
SBITS_HD constexpr uint64_t tile_bytes(int64_t rows, int64_t cols, int64_t group, int bits) {
  const int64_t units = units_for_cols(cols);
  if (bits == kKeepF16Bits) return uint64_t(rows) * uint64_t(units) * kUnitCodes * 2u;
  if (!is_codec_bits(bits)) return 0;
  return tile_plane_bytes(rows, units, plane0_bits(bits)) + tile_plane_bytes(rows, units, plane1_bits(bits)) +
         tile_scale_bytes(rows, groups_for_units(units, group));
}

// One tile located in the tensor bytes.
struct TileView {
  int rows = 0, cols = 0;      // valid rows and columns
  int units = 0;               // pack units stored per row
  int groups = 0;              // scale groups per row
  int group_units = 0;         // pack units per (full) group: G / 32
  int bits = 0;
  const uint32_t* plane0 = nullptr;  // b < 16
  const uint32_t* plane1 = nullptr;  // b < 16 and P1 > 0
  const uint16_t* scales = nullptr;  // b < 16: [rows][groups][2] = {scale, min} as f16
  const uint16_t* f16 = nullptr;     // b = 16: [rows][units * 32]
};

SBITS_HD inline TileView tile_view(const TiledDesc& d, int64_t tr, int64_t tc) {
  TileView v;
  const int64_t idx = tr * d.tiles_c + tc;
  const int64_t r_rows = d.rows - tr * d.tile_rows, r_cols = d.cols - tc * d.tile_cols;
  v.rows = int(r_rows < d.tile_rows ? r_rows : d.tile_rows);
  v.cols = int(r_cols < d.tile_cols ? r_cols : d.tile_cols);
  v.units = int(units_for_cols(v.cols));
  v.groups = int(groups_for_units(v.units, d.group));
  v.group_units = d.group / kUnitCodes;
  v.bits = d.bits[idx];
  const uint8_t* base = d.data + d.offsets[idx];
  if (v.bits == kKeepF16Bits) {
    v.f16 = reinterpret_cast<const uint16_t*>(base);
    return v;
  }
  const int p0 = plane0_bits(v.bits), p1 = plane1_bits(v.bits);
  const uint64_t b0 = tile_plane_bytes(v.rows, v.units, p0), b1 = tile_plane_bytes(v.rows, v.units, p1);
  v.plane0 = reinterpret_cast<const uint32_t*>(base);
  v.plane1 = p1 ? reinterpret_cast<const uint32_t*>(base + b0) : nullptr;
  v.scales = reinterpret_cast<const uint16_t*>(base + b0 + b1);
  return v;
}

// The words of (row r, unit u) in each plane.
template <class Codec>
SBITS_HD inline const uint32_t* unit_plane0(const TileView& t, int r, int u) {
  return t.plane0 + (size_t(r) * size_t(t.units) + size_t(u)) * Codec::kPlane0;
}
template <class Codec>
SBITS_HD inline const uint32_t* unit_plane1(const TileView& t, int r, int u) {
  return Codec::kPlane1 ? t.plane1 + (size_t(r) * size_t(t.units) + size_t(u)) * Codec::kPlane1 : nullptr;
}

// Row r of a tile as f32: out[0 .. 32 * units), padding columns included. The reference
// dequantization every kernel is tested against: w = scale * q + min, rounded once (fused).
template <class Codec>
SBITS_HD inline void dequantize_tile_row_codec(const TileView& t, int r, float* out) {
  for (int u = 0; u < t.units; ++u) {
    const uint16_t* sm = t.scales + (size_t(r) * size_t(t.groups) + size_t(u / t.group_units)) * 2;
    const float s = half_to_float(sm[0]), m = half_to_float(sm[1]);
    const uint32_t* p0 = unit_plane0<Codec>(t, r, u);
    const uint32_t* p1 = unit_plane1<Codec>(t, r, u);
    for (int i = 0; i < kUnitCodes; ++i) out[u * kUnitCodes + i] = fmaf(float(Codec::get(p0, p1, i)), s, m);
  }
}

SBITS_HD inline void dequantize_tile_row(const TileView& t, int r, float* out) {
  if (t.bits == kKeepF16Bits) {
    const uint16_t* src = t.f16 + size_t(r) * size_t(t.units) * kUnitCodes;
    for (int i = 0; i < t.units * kUnitCodes; ++i) out[i] = half_to_float(src[i]);
    return;
  }
  dispatch_codec(t.bits, [&](auto codec) { dequantize_tile_row_codec<decltype(codec)>(t, r, out); });
}

}  // namespace sbits::kernels::quant
