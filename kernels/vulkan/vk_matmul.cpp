// matmul on every weight type, and the tiled weights' upload (validate, copy the tile table).
//
// Decode (n <= 8 rows): dense weights take matvec_dense (each element read once for all rows);
// tiled weights take one dispatch: on the quantizer's tile shape the split matvec
// (matvec_dot.comp with integer dot products, else matvec_tiled.comp; planned per weight at
// upload: plan_split_matvec; the rows of x on grid z), else tiled.comp MODE 0 (its workgroup
// shape: matvec_rows below). Prefill (n > 8): a shared-memory GEMM, directly on dense weights,
// and on blocks of tiled rows dequantized to f32 scratch; where the device has cooperative
// matrices, tiled rows dequantized to f16 go to matmul_coopmat.comp instead.
#include <algorithm>

#include "kernels/quant/tiled.h"
#include "kernels/vulkan/vk_backend_impl.h"
#include "kernels/quant/tiled_check.h"

namespace sbits::kernels::vk {
namespace {

constexpr int kDecodeMaxRows = 8;
// Words of x's integer form per row and tile column (shaders/xq_layout.glsl XQ_TILE_WORDS).
constexpr size_t kXqTileWords = 256 + 8;
// Weights in one block of tiled rows dequantized for prefill (128 MB of f32 scratch, 64 MB of f16;
// capped by the weight's own size). Each block
// is a dequantization and a GEMM dispatch; fewer, fuller blocks pay fewer GEMM tails: 7B prefill
// 1206-1215 tok/s vs 1078-1086 with 32 MB blocks (H200, run 55).
constexpr size_t kDequantFloats = size_t(32) << 20;
// matmul_dense.comp's workgroup: 64 outputs (W rows) x 64 rows of x; matmul_coopmat.comp's: 128 x 64.
constexpr int64_t kGemmOutputs = 64, kGemmRows = 64, kCoopmatOutputs = 128;
uint32_t gemm_groups_x(int64_t outputs) { return uint32_t((outputs + kGemmOutputs - 1) / kGemmOutputs); }
uint32_t gemm_groups_y(int64_t n) { return uint32_t((n + kGemmRows - 1) / kGemmRows); }

struct TiledPush {  // tiled.comp's push constants
  uint32_t rows, cols, R, C, G, tiles_c, accumulate, n_out, row0, use_ids;
};

TiledPush tiled_push(const VkWeightObj& w) {
  TiledPush p{};
  p.rows = uint32_t(w.rows);
  p.cols = uint32_t(w.cols);
  p.R = w.tile_rows;
  p.C = w.tile_cols;
  p.G = w.group;
  p.tiles_c = w.tiles_c;
  return p;
}


}  // namespace

std::unique_ptr<Weight> VulkanBackend::upload_tiled(const HostWeight& w) {
  const char* op = "upload";
  quant::check_tiled_desc(w, /*in_place=*/false);
  const quant::TiledDesc& d = *w.tiled;
  if (w.bytes > st_->ctx.props.limits.maxStorageBufferRange)
    fail(op, "a tiled weight of ", w.bytes, " bytes exceeds the device's largest storage buffer (",
         st_->ctx.props.limits.maxStorageBufferRange, " bytes)");
  if (d.tiles_r * d.tile_rows > 65535)  // the matvec's grid at one row per workgroup, the worst case
    fail(op, "a tiled weight of ", d.rows, " rows in tiles of ", d.tile_rows, " needs more than 65535 workgroups");
  const size_t n = size_t(d.tiles_r * d.tiles_c);
  std::vector<uint32_t> table(2 * n);
  for (size_t i = 0; i < n; ++i) {
    table[2 * i] = d.bits[i];
    table[2 * i + 1] = uint32_t(d.offsets[i] / 16);
  }
  auto out = std::make_unique<VkWeightObj>(st_);
  out->type = WeightType::tiled;
  out->rows = w.rows;
  out->cols = w.cols;
  out->tile_rows = uint32_t(d.tile_rows);
  out->tile_cols = uint32_t(d.tile_cols);
  out->group = uint32_t(d.group);
  out->tiles_r = uint32_t(d.tiles_r);
  out->tiles_c = uint32_t(d.tiles_c);
  out->mem = DeviceBuffer(st_->ctx, w.bytes, false, op);
  out->table = DeviceBuffer(st_->ctx, table.size() * 4, false, op);
  st_->upload(out->mem.buffer, 0, w.data, w.bytes);
  st_->upload(out->table.buffer, 0, table.data(), table.size() * 4);
  if (split_matvec_) plan_split_matvec(*out);
  return out;
}

// matvec_tiled.comp takes 64 x 128 tiles with one scale group per tile row and whole tiles across.
// Its workgroup (4 groups of 32) covers 64 rows of kSplitSlots chunks; the columns are split
// into workgroups (grid y) until strips x 4 x splits reaches matvec_groups_, within the shader's
// kSplitMaxTiles tiles per chunk, so that a 4096-row matrix fills the device as well as a 32000-row one.
void VulkanBackend::plan_split_matvec(VkWeightObj& w) {
  constexpr int64_t kSplitSlots = 2, kSplitMaxTiles = 64;  // matvec_tiled.comp's SLOTS, MAX_TILES
  if (w.tile_rows != 64 || w.tile_cols != 128 || w.group != 128 || w.cols % 128 != 0) return;
  const int64_t strips = w.tiles_r, tiles_c = w.tiles_c;
  int64_t splits = std::max<int64_t>(1, (matvec_groups_ + 2 * strips) / (4 * strips));
  const int64_t chunks = std::clamp(splits * kSplitSlots, (tiles_c + kSplitMaxTiles - 1) / kSplitMaxTiles, tiles_c);
  const int64_t tpc = (tiles_c + chunks - 1) / chunks;
  splits = (tiles_c + tpc * kSplitSlots - 1) / (tpc * kSplitSlots);  // no workgroup without tiles
  if (splits > 65535) return;
  w.splits = uint32_t(splits);
  w.tiles_per_chunk = uint32_t(tpc);
  const char* op = "upload";
  const size_t counter_bytes = size_t(strips) * kDecodeMaxRows * 4;  // per strip and row of x
  w.counters = DeviceBuffer(st_->ctx, counter_bytes, false, op);
  st_->stream.reserve(0, 2, op);
  st_->stream.zero(w.counters.buffer, 0, (counter_bytes + 15) & ~size_t(15));
  if (splits > 1) {
    w.partial = DeviceBuffer(st_->ctx, size_t(splits * w.rows) * 4, false, op);
    w.partial_rows = 1;
  }
}

void VulkanBackend::matmul(const Weight& w, const Buffer& x, int n, Buffer& y, bool accumulate) {
  const char* op = "matmul";
  std::lock_guard<std::recursive_mutex> lock(st_->mutex);
  const VkWeightObj& wt = vk_weight(w, op);
  const VkBufferObj& xs = vk_buffer(x, op, "x");
  VkBufferObj& ys = vk_buffer(y, op, "y");
  if (n < 0) fail(op, "n must be >= 0, got ", n);
  check_count(op, "x", xs, n, wt.cols);
  check_count(op, "y", ys, n, wt.rows);
  if (&xs == &ys && n > 0) fail(op, "y must not be the same buffer as x");
  if (n == 0) return;
  if (wt.type == WeightType::tiled)
    matmul_tiled(wt, xs, n, ys, accumulate);
  else
    matmul_dense(wt, xs, n, ys, accumulate);
}

void VulkanBackend::matmul_dense(const VkWeightObj& w, const VkBufferObj& x, int n, VkBufferObj& y, bool accumulate) {
  st_->stream.reserve(0, 1, "matmul");
  const uint32_t type = uint32_t(w.type);
  if (n <= kDecodeMaxRows) {
    const uint32_t pc[3] = {uint32_t(w.rows), uint32_t(w.cols), accumulate ? 1u : 0u};
    const uint32_t groups = uint32_t((w.rows + 7) / 8);  // 8 output rows per workgroup
    const uint32_t gx = std::min<uint32_t>(groups, 65535), gy = (groups + gx - 1) / gx;
    st_->stream.dispatch(pipeline("matvec_dense", {type, uint32_t(n)}, 3), {BufRef{w.mem.buffer}, x.ref(), y.ref()},
                         pc, sizeof(pc), gx, gy);
    return;
  }
  const uint32_t pc[7] = {uint32_t(n), uint32_t(w.rows), uint32_t(w.cols), uint32_t(w.cols), 0, uint32_t(w.rows),
                          accumulate ? 1u : 0u};
  st_->stream.dispatch(pipeline("matmul_dense", {type}, 3), {BufRef{w.mem.buffer}, x.ref(), y.ref()}, pc, sizeof(pc),
                       gemm_groups_x(w.rows), gemm_groups_y(n));
}

void VulkanBackend::matmul_tiled(const VkWeightObj& w, const VkBufferObj& x, int n, VkBufferObj& y, bool accumulate) {
  if (n <= kDecodeMaxRows) return matvec_tiled(w, x, n, y, accumulate);
  const int64_t rows = w.rows, cols = w.cols;
  // Matrix units where the device has them (matmul_coopmat.comp: whole 32-column steps, f16
  // weights and x, f32 sums); f32 dequantization and the shared-memory GEMM otherwise. Both
  // dequantize blocks of up to kDequantFloats weights (the f16 scratch is half the f32 one).
  const bool coopmat = st_->ctx.coopmat && cols % 32 == 0;
  const size_t elem = coopmat ? 2 : 4;
  int64_t block = std::max<int64_t>(1, int64_t(kDequantFloats) / cols);
  if (block >= kGemmOutputs) block = block / kGemmOutputs * kGemmOutputs;
  block = std::min(block, rows);
  DeviceBuffer& s = scratch(dequant_, size_t(block * cols) * elem, false, "matmul scratch");
  for (int64_t o0 = 0; o0 < rows; o0 += block) {
    const int64_t nb = std::min(block, rows - o0);
    st_->stream.reserve(0, 2, "matmul");
    TiledPush tp = tiled_push(w);
    tp.n_out = uint32_t(nb);
    tp.row0 = uint32_t(o0);
    const BufRef sr{s.buffer};
    dispatch_1d(pipeline("tiled", {coopmat ? 2u : 1u, 1, 64}, 5), {BufRef{w.mem.buffer}, BufRef{w.table.buffer}, sr, sr, sr},
                &tp, sizeof(tp), size_t(nb) * size_t((cols + 7) / 8));
    const uint32_t pc[7] = {uint32_t(n), uint32_t(nb), uint32_t(cols), uint32_t(cols), uint32_t(o0), uint32_t(rows),
                            accumulate ? 1u : 0u};
    if (coopmat)
      st_->stream.dispatch(pipeline("matmul_coopmat", {}, 3), {sr, x.ref(), y.ref()}, pc, sizeof(pc),
                           uint32_t((nb + kCoopmatOutputs - 1) / kCoopmatOutputs), gemm_groups_y(n));
    else
      st_->stream.dispatch(pipeline("matmul_dense", {0}, 3), {sr, x.ref(), y.ref()}, pc, sizeof(pc), gemm_groups_x(nb),
                           gemm_groups_y(n));
  }
}

void VulkanBackend::matvec_tiled(const VkWeightObj& w, const VkBufferObj& x, int n, VkBufferObj& y, bool accumulate) {
  if (w.splits != 0) return matvec_split(w, x, n, y, accumulate);
  const uint32_t rw = matvec_rows();
  const uint32_t groups = w.tiles_r * ((w.tile_rows + rw - 1) / rw);
  st_->stream.reserve(0, 1, "matmul");
  TiledPush tp = tiled_push(w);
  tp.accumulate = accumulate ? 1 : 0;
  st_->stream.dispatch(pipeline("tiled", {0, uint32_t(n), rw}, 5),
                       {BufRef{w.mem.buffer}, BufRef{w.table.buffer}, x.ref(), y.ref(), x.ref()}, &tp, sizeof(tp),
                       groups, 1);
}

// Rows of x go to grid z (n <= 8); each row's splits have their own partial sums and counters.
void VulkanBackend::matvec_split(const VkWeightObj& w, const VkBufferObj& x, int n, VkBufferObj& y, bool accumulate) {
  if (w.splits > 1 && w.partial_rows < n) {  // grown to the most rows seen (~30 MB per row for a 7B)
    st_->stream.flush();  // the smaller buffer may be in use by what was recorded
    w.partial = DeviceBuffer(st_->ctx, size_t(w.splits) * size_t(w.rows) * size_t(n) * 4, false, "matmul");
    w.partial_rows = n;
  }
  const uint32_t pc[5] = {uint32_t(w.rows), w.tiles_c, accumulate ? 1u : 0u, w.tiles_per_chunk, w.splits};
  const BufRef counters{w.counters.buffer}, partial = w.splits > 1 ? BufRef{w.partial.buffer} : counters;
  const BufRef wm{w.mem.buffer}, table{w.table.buffer};
  const std::vector<uint32_t>& switches = matvec_switches_[n > 1 ? 1 : 0];
  if (integer_dot_) {
    const BufRef xq = x_digits(x, w.tiles_c, n);
    st_->stream.reserve(0, 1, "matmul");
    st_->stream.dispatch(pipeline("matvec_dot", switches, 7), {wm, table, x.ref(), y.ref(), partial, counters, xq},
                         pc, sizeof(pc), w.tiles_r, w.splits, uint32_t(n));
    return;
  }
  st_->stream.reserve(0, 1, "matmul");
  st_->stream.dispatch(pipeline("matvec_tiled", switches, 6), {wm, table, x.ref(), y.ref(), partial, counters},
                       pc, sizeof(pc), w.tiles_r, w.splits, uint32_t(n));
}

// Per row of x: kXqTileWords words per tile column (xq.comp; shaders/xq_layout.glsl).
BufRef VulkanBackend::x_digits(const VkBufferObj& x, uint32_t tiles_c, int n) {
  const uint64_t written = st_->stream.write_count(x.mem.buffer);
  if (x.digits_at == written && x.digits_tiles == tiles_c && x.digits_rows >= n) return BufRef{x.digits.buffer};
  const size_t bytes = size_t(n) * tiles_c * kXqTileWords * 4;
  if (!x.digits.buffer || x.digits.bytes < bytes) {
    st_->stream.flush();  // an older digits buffer may be in use by what was recorded
    x.digits = DeviceBuffer(st_->ctx, bytes, false, "matmul scratch");
  }
  st_->stream.reserve(0, 1, "matmul");
  const XqPush pc{tiles_c, 0.0f};
  st_->stream.dispatch(pipeline("xq", {0, 0}, 4), {x.ref(), x.ref(), x.ref(), BufRef{x.digits.buffer}}, &pc, sizeof(pc),
                       tiles_c, uint32_t(n));
  x.digits_at = written;
  x.digits_tiles = tiles_c;
  x.digits_rows = n;
  return BufRef{x.digits.buffer};
}

// An op whose output x a split matvec has read before (so x owns digits of this width) writes
// x's digits in the same dispatch (xq.comp OP 1, 2; attention.comp), saving the dependent
// conversion after it.
bool VulkanBackend::fuse_digits(const VkBufferObj& out, size_t width) const {
  return integer_dot_ && width % 128 == 0 && out.digits.buffer && out.digits_tiles == width / 128;
}

void VulkanBackend::dispatch_with_digits(uint32_t op, uint32_t wtype, BufRef a, BufRef b, const VkBufferObj& out,
                                         float eps) {
  const XqPush pc{out.digits_tiles, eps};
  st_->stream.dispatch(pipeline("xq", {op, wtype}, 4), {a, b, out.ref(), BufRef{out.digits.buffer}}, &pc, sizeof(pc),
                       out.digits_tiles);
  digits_written(out);
}

void VulkanBackend::digits_written(const VkBufferObj& out) {
  out.digits_at = st_->stream.write_count(out.mem.buffer);
  out.digits_rows = 1;
}

// Rows per workgroup of the tiled matvec: a whole 64-row strip on CPU drivers (llvmpipe pays
// ~60 us per workgroup), 8 on GPUs (a 4096-row matrix makes 512 workgroups, each of 8 groups
// of 32 invocations splitting the columns 8 ways). SBITS_VULKAN_MATVEC_ROWS overrides (tuning).
uint32_t VulkanBackend::matvec_rows() const {
  if (matvec_rows_ != 0) return uint32_t(matvec_rows_);
  return st_->ctx.info.type == "cpu" ? 64u : 8u;
}

}  // namespace sbits::kernels::vk
