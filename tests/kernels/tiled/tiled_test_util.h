// Random tiled weights built with kernels/quant alone (random codes, f16 scales and mins, f16
// tiles), and their dense f32 reference, for the kernel tests.
#pragma once

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/quant/tiled.h"

namespace sbits::kernels::test {

struct RandomTiled {
  std::vector<uint8_t> storage;       // holds the bytes at a 16-byte aligned address
  const uint8_t* data = nullptr;
  size_t bytes = 0;
  std::vector<uint8_t> bits;
  std::vector<uint64_t> offsets;
  quant::TiledDesc desc;
  std::vector<float> dense;           // [rows][cols], quant::dequantize_tile_row's values
};

inline uint16_t random_half(std::mt19937& rng, float lo, float hi) {
  // Build from an f32 in [lo, hi) by truncating to 10 mantissa bits (exact in f16 for
  // magnitudes in the normal range used here).
  const float f = std::uniform_real_distribution<float>(lo, hi)(rng);
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const int e = int((u >> 23) & 0xff) - 127 + 15;
  if (e <= 0) return uint16_t(sign);
  return uint16_t(sign | (uint32_t(e) << 10) | ((u >> 13) & 0x3ffu));
}

// `table` has tiles_r * tiles_c bitwidths (2..8, 16).
inline RandomTiled make_random_tiled(int64_t rows, int64_t cols, int R, int C, int G, const std::vector<uint8_t>& table,
                                     uint32_t seed) {
  RandomTiled t;
  quant::TiledDesc& d = t.desc;
  d.rows = rows;
  d.cols = cols;
  d.tile_rows = R;
  d.tile_cols = C;
  d.group = G;
  d.tiles_r = (rows + R - 1) / R;
  d.tiles_c = (cols + C - 1) / C;
  t.bits = table;
  t.offsets.resize(table.size());
  uint64_t off = quant::pad16(table.size());
  for (int64_t tr = 0; tr < d.tiles_r; ++tr)
    for (int64_t tc = 0; tc < d.tiles_c; ++tc) {
      const size_t i = size_t(tr * d.tiles_c + tc);
      t.offsets[i] = off;
      off += quant::tile_bytes(std::min<int64_t>(R, rows - tr * R), std::min<int64_t>(C, cols - tc * C), G, table[i]);
    }
  t.bytes = off;
  t.storage.assign(off + 16, 0);
  uint8_t* base = t.storage.data() + (16 - reinterpret_cast<uintptr_t>(t.storage.data()) % 16) % 16;
  t.data = base;
  std::memcpy(base, table.data(), table.size());
  d.bits = t.bits.data();
  d.offsets = t.offsets.data();
  d.data = base;
  std::mt19937 rng(seed);
  // Fill every tile region with random bits: codes and f16 values alike are then arbitrary,
  // then overwrite the scales with sane f16 values (and f16 tiles with finite ones).
  for (uint64_t i = quant::pad16(table.size()); i < off; ++i) base[i] = uint8_t(rng());
  for (int64_t tr = 0; tr < d.tiles_r; ++tr)
    for (int64_t tc = 0; tc < d.tiles_c; ++tc) {
      const quant::TileView v = quant::tile_view(d, tr, tc);
      if (v.bits == 16) {
        auto* h = const_cast<uint16_t*>(v.f16);
        for (int k = 0; k < v.rows * v.units * 32; ++k) h[k] = random_half(rng, -1.0f, 1.0f);
        continue;
      }
      auto* s = const_cast<uint16_t*>(v.scales);
      for (int k = 0; k < v.rows * v.groups; ++k) {
        s[2 * k] = random_half(rng, 0.001f, 0.1f);
        s[2 * k + 1] = random_half(rng, -0.5f, 0.0f);
      }
    }
  t.dense.assign(size_t(rows * cols), 0.0f);
  std::vector<float> row(static_cast<size_t>(C));
  for (int64_t tr = 0; tr < d.tiles_r; ++tr)
    for (int64_t tc = 0; tc < d.tiles_c; ++tc) {
      const quant::TileView v = quant::tile_view(d, tr, tc);
      for (int r = 0; r < v.rows; ++r) {
        quant::dequantize_tile_row(v, r, row.data());
        std::memcpy(&t.dense[size_t((tr * R + r) * cols + tc * C)], row.data(), size_t(v.cols) * sizeof(float));
      }
    }
  return t;
}

}  // namespace sbits::kernels::test
