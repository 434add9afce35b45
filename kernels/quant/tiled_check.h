// Validation of a tiled weight's description at upload, shared by every backend: the tile
// grid matches the shape, every bitwidth has a kernel, and every tile lies inside the weight's
// bytes at a 16-byte aligned offset. Host-only (not SBITS_HD).
//
// Errors: KernelError "upload: ..." saying what was expected and what was found.
#pragma once

#include <algorithm>
#include <cstdint>

#include "kernels/backend.h"
#include "kernels/op_checks.h"
#include "kernels/quant/tiled.h"

namespace sbits::kernels::quant {

// in_place: the backend reads the weight where it lies (the CPU backend), so its data must
// itself be 16-byte aligned.
inline void check_tiled_desc(const HostWeight& w, bool in_place) {
  if (!w.tiled) fail("upload", "a tiled weight needs HostWeight::tiled (the parsed tile table)");
  const TiledDesc& d = *w.tiled;
  if (d.rows != w.rows || d.cols != w.cols)
    fail("upload", "tiled description is ", d.rows, " x ", d.cols, ", the weight ", w.rows, " x ", w.cols);
  if (d.tile_rows < 1 || d.tile_rows > 4096 || d.tile_cols < 32 || d.tile_cols > 4096 || d.tile_cols % 32 ||
      d.group < 32 || d.group % 32 || d.tile_cols % d.group)
    fail("upload", "tile ", d.tile_rows, " x ", d.tile_cols, " with group ", d.group,
         ": expected R in 1..4096, C a multiple of 32 up to 4096, G a multiple of 32 dividing C");
  if (d.tiles_r != (d.rows + d.tile_rows - 1) / d.tile_rows || d.tiles_c != (d.cols + d.tile_cols - 1) / d.tile_cols)
    fail("upload", "tile grid ", d.tiles_r, " x ", d.tiles_c, " does not match ", d.rows, " x ", d.cols);
  if (!d.data || !d.bits || !d.offsets || d.data != w.data)
    fail("upload", "tiled description: null or mismatched pointers");
  if (in_place && reinterpret_cast<uintptr_t>(d.data) % 16 != 0)
    fail("upload", "tiled data must be 16-byte aligned");
  for (int64_t tr = 0; tr < d.tiles_r; ++tr) {
    for (int64_t tc = 0; tc < d.tiles_c; ++tc) {
      const int64_t i = tr * d.tiles_c + tc;
      const int bits = d.bits[i];
      if (!is_tile_bits(bits)) fail("upload", "tile (", tr, ", ", tc, "): bitwidth ", bits, " has no kernel");
      const int64_t rows = std::min<int64_t>(d.tile_rows, d.rows - tr * d.tile_rows);
      const int64_t cols = std::min<int64_t>(d.tile_cols, d.cols - tc * d.tile_cols);
      const uint64_t size = tile_bytes(rows, cols, d.group, bits);
      if (d.offsets[i] % 16 != 0 || d.offsets[i] > w.bytes || size > w.bytes - d.offsets[i])
        fail("upload", "tile (", tr, ", ", tc, ") at offset ", d.offsets[i], " (+", size, " bytes) is outside the ",
             w.bytes, " bytes of the weight or misaligned");
    }
  }
}

}  // namespace sbits::kernels::quant
