// The "tiled" layout's size rule and validation (SBITS.md "Layout 16: tiled").
#include "formats/tiled_layout.h"

#include <cstring>

#include "formats/bytes.h"
#include "formats/sbits_layout.h"

namespace sbits {
namespace {
using detail::checked_add;
using detail::checked_mul;

constexpr uint64_t kUnit = 32;  // codes per pack unit (a row's 32 consecutive columns)

uint64_t pad16(uint64_t n) { return (n + 15) / 16 * 16; }

// Low/high plane widths of a codec bitwidth (b = 3 is 2 + 1, 5 is 4 + 1, 6 is 4 + 2).
void plane_bits(uint32_t bits, uint64_t& p0, uint64_t& p1) {
  p0 = bits <= 3 ? 2 : bits == 8 ? 8 : 4;
  p1 = bits - p0;
}

// Bytes of a tile with `rows` valid rows and `cols` valid columns (see the spec's drawing).
uint64_t tile_bytes(const TiledParams& p, uint64_t rows, uint64_t cols, uint32_t bits) {
  const uint64_t units = (cols + kUnit - 1) / kUnit;
  if (bits == kTiledKeepF16Bits) return rows * units * kUnit * 2;
  uint64_t p0, p1;
  plane_bits(bits, p0, p1);
  const uint64_t groups = (units * kUnit + p.group - 1) / p.group;
  return pad16(rows * units * 4 * p0) + pad16(rows * units * 4 * p1) + pad16(rows * groups * 4);
}

uint64_t edge(uint64_t total, uint64_t tile, uint64_t index) {
  const uint64_t left = total - index * tile;
  return left < tile ? left : tile;
}

// Sum over all tiles of f(rows_t, cols_t) * count: at most four distinct tile shapes exist
// (full, right edge, bottom edge, corner), so uniform sizes cost O(1), not O(tiles).
template <class F>
uint64_t sum_over_shapes(const TiledParams& p, const TiledGrid& g, F&& f, const std::string& what) {
  const uint64_t full_r = g.rows / p.tile_rows, full_c = g.cols / p.tile_cols;
  const uint64_t last_r = g.rows % p.tile_rows, last_c = g.cols % p.tile_cols;
  uint64_t total = 0;
  auto add = [&](uint64_t count, uint64_t r, uint64_t c) {
    if (count && r && c) total = checked_add(total, checked_mul(count, f(r, c), what), what);
  };
  add(full_r * full_c, p.tile_rows, p.tile_cols);
  add(full_r, p.tile_rows, last_c);
  add(full_c, last_r, p.tile_cols);
  add(1, last_r, last_c);
  return total;
}

std::string tname(const TensorInfo& t, const std::string& where) { return where + "tensor " + t.name + ": tiled"; }

}  // namespace

bool tiled_bits_valid(uint32_t bits) {
  return bits == 2 || bits == 3 || bits == 4 || bits == 5 || bits == 6 || bits == 8 || bits == kTiledKeepF16Bits;
}

void check_tiled_params(const TiledParams& p, const std::string& where) {
  auto bad = [&](const char* field, uint32_t v, const char* want) {
    throw FormatError(where + ": " + field + ": expected " + want + ", found " + std::to_string(v));
  };
  if (p.tile_rows < 1 || p.tile_rows > 4096) bad("tile_rows", p.tile_rows, "1..4096");
  if (p.tile_cols < kUnit || p.tile_cols > 4096 || p.tile_cols % kUnit) {
    bad("tile_cols", p.tile_cols, "a multiple of 32 in 32..4096");
  }
  if (p.group < kUnit || p.group % kUnit || p.group > p.tile_cols || p.tile_cols % p.group) {
    bad("group", p.group, ("a multiple of 32 that divides tile_cols " + std::to_string(p.tile_cols)).c_str());
  }
  if (p.scale_format != kTiledScaleF16Pairs) bad("scale_format", p.scale_format, "1 (f16 scale + f16 min)");
}

std::vector<uint8_t> encode_tiled_aux(const TiledParams& p) {
  check_tiled_params(p, "tiled aux");
  std::vector<uint8_t> a(kTiledAuxBytes, 0);
  const uint16_t v[3] = {uint16_t(p.tile_rows), uint16_t(p.tile_cols), uint16_t(p.group)};
  std::memcpy(a.data(), v, sizeof v);
  a[6] = uint8_t(p.scale_format);
  return a;
}

TiledParams decode_tiled_aux(std::span<const uint8_t> aux, const std::string& where) {
  if (aux.size() != kTiledAuxBytes) {
    throw FormatError(where + ": aux: expected " + std::to_string(kTiledAuxBytes) + " bytes, found " +
                      std::to_string(aux.size()));
  }
  uint16_t v[3];
  std::memcpy(v, aux.data(), sizeof v);
  TiledParams p{v[0], v[1], v[2], aux[6]};
  if (aux[7] != 0) throw FormatError(where + ": aux: reserved byte 7: expected 0, found " + std::to_string(aux[7]));
  check_tiled_params(p, where);
  return p;
}

TiledGrid tiled_grid(const TiledParams& p, uint64_t rows, uint64_t cols) {
  TiledGrid g;
  g.rows = rows;
  g.cols = cols;
  g.tiles_r = (rows + p.tile_rows - 1) / p.tile_rows;
  g.tiles_c = (cols + p.tile_cols - 1) / p.tile_cols;
  return g;
}

uint64_t tiled_tile_bytes(const TiledParams& p, const TiledGrid& g, uint64_t tr, uint64_t tc, uint32_t bits) {
  return tile_bytes(p, edge(g.rows, p.tile_rows, tr), edge(g.cols, p.tile_cols, tc), bits);
}

uint64_t tiled_table_bytes(const TiledGrid& g) { return pad16(g.count()); }

uint64_t tiled_tensor_bytes(const TiledParams& p, uint64_t rows, uint64_t cols, std::span<const uint8_t> bits) {
  check_tiled_params(p, "tiled tensor");
  const TiledGrid g = tiled_grid(p, rows, cols);
  if (bits.size() != g.count()) {
    throw FormatError("tiled tensor [" + std::to_string(rows) + ", " + std::to_string(cols) + "]: expected " +
                      std::to_string(g.count()) + " tile bitwidths, found " + std::to_string(bits.size()));
  }
  uint64_t total = tiled_table_bytes(g);
  for (uint64_t tr = 0; tr < g.tiles_r; ++tr) {
    for (uint64_t tc = 0; tc < g.tiles_c; ++tc) {
      const uint8_t b = bits[tr * g.tiles_c + tc];
      if (!tiled_bits_valid(b)) {
        throw FormatError("tiled tensor: tile (" + std::to_string(tr) + ", " + std::to_string(tc) + "): bitwidth " +
                          std::to_string(b) + " is not one of 2, 3, 4, 5, 6, 8, 16");
      }
      total += tiled_tile_bytes(p, g, tr, tc, b);
    }
  }
  return total;
}

uint64_t tiled_tensor_bytes(const TiledParams& p, uint64_t rows, uint64_t cols, uint32_t bits) {
  check_tiled_params(p, "tiled tensor");
  if (!tiled_bits_valid(bits)) {
    throw FormatError("tiled tensor: bitwidth " + std::to_string(bits) + " is not one of 2, 3, 4, 5, 6, 8, 16");
  }
  const TiledGrid g = tiled_grid(p, rows, cols);
  return tiled_table_bytes(g) +
         sum_over_shapes(p, g, [&](uint64_t r, uint64_t c) { return tile_bytes(p, r, c, bits); }, "tiled tensor");
}

namespace detail {

void check_tiled_info(const TensorInfo& t, const std::string& where) {
  const std::string w = tname(t, where);
  if (t.shape.size() != 2) {
    throw FormatError(w + ": expected a 2-D shape [rows, cols], found " + shape_string(t.shape));
  }
  const TiledParams p = decode_tiled_aux(t.aux, w);
  const TiledGrid g = tiled_grid(p, t.shape[0], t.shape[1]);
  // Smallest and largest sizes any table could give: every tile at 2 bits, every tile at its
  // largest encoding (16 bits, or 8 bits + scales when a tile is narrow).
  const uint64_t table = tiled_table_bytes(g);
  const uint64_t lo = table + sum_over_shapes(p, g, [&](uint64_t r, uint64_t c) { return tile_bytes(p, r, c, 2); }, w);
  const uint64_t hi = table + sum_over_shapes(p, g, [&](uint64_t r, uint64_t c) {
    const uint64_t a = tile_bytes(p, r, c, 8), b = tile_bytes(p, r, c, kTiledKeepF16Bits);
    return a > b ? a : b;
  }, w);
  if (t.size < lo || t.size > hi) {
    throw FormatError(w + " " + shape_string(t.shape) + ": expected " + std::to_string(lo) + ".." +
                      std::to_string(hi) + " bytes for " + std::to_string(g.count()) + " tiles, found " +
                      std::to_string(t.size));
  }
}

}  // namespace detail

TiledTensor parse_tiled(const TensorInfo& t, std::span<const uint8_t> bytes, const std::string& where) {
  detail::check_tiled_info(t, where);
  const std::string w = tname(t, where);
  if (bytes.size() != t.size) {
    throw FormatError(w + ": expected " + std::to_string(t.size) + " bytes, found " + std::to_string(bytes.size()));
  }
  TiledTensor r;
  r.params = decode_tiled_aux(t.aux, w);
  r.grid = tiled_grid(r.params, t.shape[0], t.shape[1]);
  r.bytes = bytes;
  const uint64_t n = r.grid.count(), table = tiled_table_bytes(r.grid);
  r.bits = bytes.subspan(0, n);
  for (uint64_t i = n; i < table; ++i) {
    if (bytes[i] != 0) throw FormatError(w + ": table padding byte " + std::to_string(i) + " is not zero");
  }
  r.offsets.resize(n);
  uint64_t off = table;
  for (uint64_t i = 0; i < n; ++i) {
    const uint64_t tr = i / r.grid.tiles_c, tc = i % r.grid.tiles_c;
    if (!tiled_bits_valid(r.bits[i])) {
      throw FormatError(w + ": tile (" + std::to_string(tr) + ", " + std::to_string(tc) + "): bitwidth code " +
                        std::to_string(r.bits[i]) + ", expected one of 2, 3, 4, 5, 6, 8, 16");
    }
    r.offsets[i] = off;
    off += tiled_tile_bytes(r.params, r.grid, tr, tc, r.bits[i]);  // no overflow: off <= hi bound
  }
  if (off != t.size) {
    throw FormatError(w + ": the tile table implies " + std::to_string(off) + " bytes, tensor size is " +
                      std::to_string(t.size));
  }
  return r;
}

}  // namespace sbits
