// matmul on every weight type, and the upload of tiled weights.
//
// Paths, by weight type and rows of x (n):
//   f32/f16/bf16, n <= 8   dense matvec kernel, f32 math (dense.cu)
//   f32/f16/bf16, n > 8    cuBLAS; f16/bf16 weights take x rounded to their type
//   tiled, n <= 8          the tensor-core kernel (tiled_mma.cu) when tile_rows % 16 == 0,
//                          tile_cols == group == 128 (what sbits-quantize writes); otherwise
//                          the generic kernel, one block per row, f32 math. n = 1 on weights
//                          of >= 2048 columns (a multiple of 128): integer dot products
//                          (tiled_dp4a.cu, variant 6)
//   tiled, n > 8           dequantize row chunks to f16 + cuBLAS (prefill is matrix-bound)
#include <algorithm>
#include <tuple>
#include <utility>
#include <vector>

#include "kernels/cuda/cuda_backend_impl.h"
#include "kernels/quant/tiled.h"
#include "kernels/quant/tiled_check.h"

namespace sbits::kernels::cuda {
namespace {

// Prefill dequantizes at most this many bytes of f16 weights at a time: 2048 rows of a
// 4096-column weight, plenty for cuBLAS, and 24 MB of scratch rather than 96 (a 7B at 2.5 bpw
// with a 4k-token f16 KV cache is 3.96 GiB before any scratch).
constexpr size_t kDequantChunkBytes = size_t(16) << 20;


// offs16 (launch.h TiledDev): the staged kernels copy tile i as the run up to tile i + 1, so
// the tiles must follow each other exactly (as formats/SBITS.md lays them out) and fit 32 bits.
bool tile_offsets16(const quant::TiledDesc& d, std::vector<uint32_t>& offs16) {
  const int64_t tiles = d.tiles_r * d.tiles_c;
  offs16.assign(size_t(tiles + 1), 0);
  uint64_t end = 0;
  for (int64_t i = 0; i < tiles; ++i) {
    const int64_t tr = i / d.tiles_c, tc = i % d.tiles_c;
    if ((i > 0 && d.offsets[i] != end) || d.offsets[i] / 16 > UINT32_MAX) return false;
    offs16[size_t(i)] = uint32_t(d.offsets[i] / 16);
    end = d.offsets[i] + quant::tile_bytes(std::min<int64_t>(d.tile_rows, d.rows - tr * d.tile_rows),
                                           std::min<int64_t>(d.tile_cols, d.cols - tc * d.tile_cols), d.group,
                                           d.bits[i]);
  }
  offs16[size_t(tiles)] = uint32_t(end / 16);
  return end / 16 <= UINT32_MAX;
}

}  // namespace

std::unique_ptr<Weight> CudaBackend::upload_tiled(const HostWeight& w) {
  const char* op = "upload";
  quant::check_tiled_desc(w, /*in_place=*/false);
  const quant::TiledDesc& d = *w.tiled;
  auto out = std::make_unique<CudaWeight>(st_);
  out->type = WeightType::tiled;
  out->rows = w.rows;
  out->cols = w.cols;
  // Tile offsets stay 16-byte aligned on the device: cudaMalloc aligns to 256.
  out->mem = DeviceMemory(w.bytes, op);
  st_->copy_to_device(out->mem.get(), w.data, w.bytes);
  const size_t tiles = size_t(d.tiles_r * d.tiles_c);
  const size_t bits_bytes = (tiles + 15) / 16 * 16, offs_bytes = tiles * sizeof(uint64_t);
  std::vector<uint32_t> offs16;
  const bool ordered = tile_offsets16(d, offs16);
  out->table = DeviceMemory(bits_bytes + offs_bytes + offs16.size() * 4, op);
  uint8_t* tb = out->table.as<uint8_t>();
  st_->copy_to_device(tb, d.bits, tiles);
  st_->copy_to_device(tb + bits_bytes, d.offsets, offs_bytes);
  if (ordered) st_->copy_to_device(tb + bits_bytes + offs_bytes, offs16.data(), offs16.size() * 4);
  out->tiled = TiledDev{out->mem.as<uint8_t>(), tb, reinterpret_cast<const uint64_t*>(tb + bits_bytes),
                        ordered ? reinterpret_cast<const uint32_t*>(tb + bits_bytes + offs_bytes) : nullptr,
                        d.rows, d.cols, d.tile_rows, d.tile_cols, d.group, d.tiles_r, d.tiles_c};
  out->mma_ok = d.tile_rows % 16 == 0 && d.tile_cols == 128 && d.group == 128;
  // Variant 4's ring slot: a full 64 x 128 tile of the widest codes this weight has (f16 tiles
  // are read in place), so that any tile, edge tiles too, fits a slot.
  int max_bits = 2;
  for (size_t i = 0; i < tiles; ++i) {
    if (d.bits[i] != quant::kKeepF16Bits) max_bits = std::max<int>(max_bits, d.bits[i]);
    out->f16_tiles = out->f16_tiles || d.bits[i] == quant::kKeepF16Bits;
  }
  out->slot_bytes = int64_t(quant::tile_bytes(64, 128, 128, max_bits));
  return out;
}

void CudaBackend::matmul(const Weight& w, const Buffer& x, int n, Buffer& y, bool accumulate) {
  const char* op = "matmul";
  std::lock_guard<std::recursive_mutex> lock(st_->mutex);
  const CudaWeight& wt = cuda_weight(w, op);
  const CudaBuffer& xs = cuda_buffer(x, op, "x");
  CudaBuffer& ys = cuda_buffer(y, op, "y");
  if (n < 0) fail(op, "n must be >= 0, got ", n);
  check_count(op, "x", xs, n, wt.cols);
  check_count(op, "y", ys, n, wt.rows);
  if (&xs == &ys && n > 0) fail(op, "y must not be the same buffer as x");
  if (n == 0) return;
  if (deferrable(wt, n)) {  // cuda_fuse.cpp: joins (or starts) a grouped launch
    defer_matmul(wt, xs, n, ys, accumulate);
    stamp(ys);
    return;
  }
  flush_pending();
  if (wt.type == WeightType::tiled)
    matmul_tiled(wt, xs, n, ys, accumulate);
  else
    matmul_dense(wt, xs, n, ys, accumulate);
  stamp(ys);
}

void CudaBackend::matmul_dense(const CudaWeight& w, const CudaBuffer& x, int n, CudaBuffer& y, bool accumulate) {
  if (n <= kMatvecMaxRows) {
    st_->queue->begin_op(0);
    auto a = zeroed<DenseMatvecArgs>();
    a.w = w.mem.get();
    a.type = int64_t(w.type);
    a.rows = w.rows;
    a.cols = w.cols;
    a.x = x.ptr();
    a.y = y.ptr();
    a.n = n;
    a.accumulate = accumulate;
    record(run<DenseMatvecArgs, launch_dense_matvec>, a);
    return;
  }
  auto a = zeroed<GemmArgs>();
  a.w = w.mem.get();
  a.type = int64_t(w.type);
  a.rows = w.rows;
  a.cols = w.cols;
  a.ldw = w.cols;
  a.x = x.ptr();
  a.ldx = w.cols;
  if (w.type != WeightType::f32) a.x = half_x(x, n, w.cols, w.cols, w.type == WeightType::bf16, false);
  a.y = y.ptr();
  a.ldy = w.rows;
  a.n = n;
  a.accumulate = accumulate;
  st_->queue->begin_op(0);
  record(run<GemmArgs, launch_gemm>, a);
}

const uint16_t* CudaBackend::half_x(const CudaBuffer& x, int n, int64_t cols, int64_t ld, bool bf16, bool sums,
                                    bool xq) {
  const char* op = "matmul";
  const size_t bytes = checked_mul(op, n, ld * 2);
  void* out = st_->x_half.ensure(*st_, bytes, "matmul x (f16)");
  float* s = sums ? static_cast<float*>(st_->x_sum.ensure(*st_, checked_mul(op, (ld + 127) / 128, kXSumStride * 4), "matmul x sums"))
                  : nullptr;
  const auto [q, qmeta] = xq ? xq_scratch(ld) : std::pair<uint8_t*, float*>{nullptr, nullptr};
  HalfX key{&x, x.version, n, cols, ld, bf16, sums, xq, out};
  HalfX& c = half_x_;
  if (c.buffer == key.buffer && c.version == key.version && c.n == n && c.cols == cols && c.ld == ld &&
      c.bf16 == bf16 && (c.sums || !sums) && (c.xq || !xq) && c.data == out)
    return static_cast<const uint16_t*>(out);
  st_->queue->begin_op(0);
  auto a = zeroed<ConvertXArgs>();
  a.x = x.ptr();
  a.out = out;
  a.sums = s;
  a.n = n;
  a.cols = cols;
  a.ld = ld;
  a.bf16 = bf16;
  a.xq = q;
  a.xq_meta = qmeta;
  record(run<ConvertXArgs, launch_convert_x>, a);
  half_x_ = key;
  return static_cast<const uint16_t*>(out);
}

namespace {
std::pair<uint8_t*, float*> digits_scratch(DeviceState& st, Scratch& s, int64_t ld, const char* what) {
  const int64_t tiles = (ld + 127) / 128;
  auto* base = static_cast<uint8_t*>(s.ensure(st, checked_mul("matmul", tiles, kXqTileBytes + kXqMetaFloats * 4), what));
  return {base, reinterpret_cast<float*>(base + tiles * kXqTileBytes)};
}
}  // namespace

std::pair<uint8_t*, float*> CudaBackend::xq_scratch(int64_t ld) {
  return digits_scratch(*st_, st_->x_q, ld, "matmul x digits (variant 6)");
}

std::pair<uint8_t*, float*> CudaBackend::fold_scratch(int64_t ld) {
  return digits_scratch(*st_, st_->fold_xq, ld, "rmsnorm fold digits");
}

std::pair<uint8_t*, float*> CudaBackend::swiglu_scratch(int64_t ld) {
  return digits_scratch(*st_, st_->swiglu_xq, ld, "swiglu fold digits");
}

double* CudaBackend::fold_sums(int64_t ld) {
  return static_cast<double*>(st_->fold_ss.ensure(*st_, size_t(ld / 32) * sizeof(double), "rmsnorm fold sums"));
}

// Variant 6 is the default for single-row matvecs on weights at least this wide: on the
// 7B-shaped random models (4096 and 11008 columns) it decoded faster than variant 5, on
// tech-llama-58m (512 and 1536 columns) 4-5% slower (H200, runs 20 and 25; kernels/cuda/NOTES.md
// round 4).
constexpr int64_t kDp4aMinCols = 2048;

bool CudaBackend::dp4a_by_default(int64_t cols, int n) const {
  return auto_dp4a_ && n == 1 && cols % 128 == 0 && cols >= kDp4aMinCols;
}

int64_t CudaBackend::tiled_variant(const TiledDev& t, int n) const {
  int64_t v = t.tile_rows == 64 ? mma_variant_ : 0;  // the staged kernels take 64-row strips
  const bool dp4a_fits = n == 1 && t.cols % 128 == 0 && t.tile_rows == 64;
  if (dp4a_fits && dp4a_by_default(t.cols, n)) v = kTiledDp4aVariant;
  if (v == kTiledDp4aVariant && !dp4a_fits) v = mma_fallback_;
  if (tiled_mma_needs_offs16(v) && !t.offs16) v = 1;
  return v;
}

// Splits the tile columns so that about mma_warps_per_sm_ (one row: mma_warps_per_sm_n1_) warps
// per multiprocessor have work (a block has 4 warps): blocks take `chunks_per_block` ranges of
// tiles_per_split tile columns.
// block_rows: the launch's blocks along the rows (all members' for a group).
void CudaBackend::tiled_split(int64_t slot_bytes, int64_t tiles_c, int64_t block_rows, int64_t partial_ld, int n,
                              TiledMmaArgs& a) {
  int warps_per_sm = n == 1 ? mma_warps_per_sm_n1_ : mma_warps_per_sm_;
  int64_t per_block = tiled_mma_chunks_per_block(a.variant);
  if (a.variant == kTiledDp4aVariant) {
    a.dp4a_steps = dp4a_steps_;
    per_block = tiled_dp4a_chunks_per_block(a.dp4a_steps);
    if (dp4a_blocks_per_sm_ == 0) dp4a_blocks_per_sm_ = tiled_dp4a_blocks_per_sm(a.dp4a_steps);
    warps_per_sm = std::min(warps_per_sm, kWideWarps * dp4a_blocks_per_sm_);
  } else if (a.variant >= 4) {
    // Ring depth: about ring_bytes_ per warp, 2..8 slots, within the block's shared memory.
    a.slot_bytes = slot_bytes;
    a.stages = std::clamp<int64_t>(mma_ring_bytes_ / slot_bytes, 2, 8);
    while (a.stages > 2 && tiled_mma_wide_smem(a.stages, a.slot_bytes) > 200 * 1024) --a.stages;
    // finish() adds the warps' sums in the rings' memory: kWideWarps x 16 x 32 floats.
    a.smem_bytes = std::max<int64_t>(tiled_mma_wide_smem(a.stages, a.slot_bytes), kWideWarps * 16 * 32 * 4 + 64);
    // The occupancy query costs microseconds, and a decode step has hundreds of matvecs.
    auto [it, fresh] = wide_blocks_per_sm_.try_emplace(a.smem_bytes, 0);
    if (fresh) it->second = tiled_mma_wide_blocks_per_sm(a.smem_bytes);
    warps_per_sm = std::min(warps_per_sm, kWideWarps * it->second);
  }
  // Rounded, not ceiled: a grid just over one wave would leave most of its second wave idle.
  const int64_t target_blocks = std::max<int64_t>(1, int64_t(st_->ctx.sm_count) * warps_per_sm / 4);
  int64_t chunks = std::max<int64_t>(1, (target_blocks + block_rows / 2) / block_rows) * per_block;
  const int64_t tps = std::clamp<int64_t>((tiles_c + chunks - 1) / chunks, 1, kTiledMmaMaxTilesPerWarp);
  chunks = (tiles_c + tps - 1) / tps;
  a.tiles_per_split = tps;
  a.splits = (chunks + per_block - 1) / per_block;
  a.partial_ld = partial_ld;
  a.cluster = a.variant == kTiledDp4aVariant && splitk_cluster_ && a.splits > 1 && a.splits <= kSplitKClusterMax;
  if (a.splits > 1 && !a.cluster) {
    a.partial = static_cast<float*>(
        st_->partial.ensure(*st_, checked_mul("matmul", a.splits * n, partial_ld * 4), "matmul split-K partials"));
    a.counters = static_cast<uint32_t*>(st_->counters.ensure(*st_, size_t(block_rows) * 4, "matmul split-K counters"));
  }
}

void CudaBackend::matmul_tiled(const CudaWeight& w, const CudaBuffer& x, int n, CudaBuffer& y, bool accumulate) {
  const TiledDev& t = w.tiled;
  if (n <= kMatvecMaxRows && !w.mma_ok) {
    st_->queue->begin_op(0);
    auto a = zeroed<TiledGenericArgs>();
    a.t = t;
    a.x = x.ptr();
    a.y = y.ptr();
    a.n = n;
    a.accumulate = accumulate;
    record(run<TiledGenericArgs, launch_tiled_generic>, a);
    return;
  }
  const int64_t ld = t.tiles_c * 128;  // x padded to whole tiles: padding columns meet zeros
  if (n <= kMatvecMaxRows) {
    auto a = zeroed<TiledMmaArgs>();
    a.variant = tiled_variant(t, n);
    // May drain the queue to grow scratch: before anything is staged.
    tiled_split(w.slot_bytes, t.tiles_c, (t.rows + tiled_mma_block_rows(a.variant) - 1) / tiled_mma_block_rows(a.variant),
                t.rows, n, a);
    a.t = t;
    // Variant 6 reads x's digits (and x itself only for f16 tiles), not the sums.
    const bool xq = a.variant == kTiledDp4aVariant;
    a.x_half = half_x(x, n, t.cols, ld, false, !xq, xq);
    if (xq)
      std::tie(a.xq, a.xq_meta) = xq_scratch(ld);
    else
      a.x_sums = static_cast<const float*>(st_->x_sum.ensure(*st_, 0, "matmul x sums"));
    a.ld = ld;
    a.n = n;
    a.y = y.ptr();
    a.accumulate = accumulate;
    st_->queue->begin_op(0);
    record(run<TiledMmaArgs, launch_tiled_mma>, a);
    return;
  }
  // Prefill: f16 rows of the weight, chunk by chunk, times x in f16 through cuBLAS.
  // At most 65535 rows: the dequantization's grid has one row of blocks per weight row.
  const int64_t chunk_rows =
      std::clamp<int64_t>(int64_t(kDequantChunkBytes / (size_t(t.cols) * 2)), 1, std::min<int64_t>(t.rows, 65535));
  auto* wbuf = static_cast<uint16_t*>(
      st_->dequant.ensure(*st_, checked_mul("matmul", chunk_rows, t.cols * 2), "matmul dequantized chunk"));
  const uint16_t* xh = half_x(x, n, t.cols, ld, false, false);
  for (int64_t r0 = 0; r0 < t.rows; r0 += chunk_rows) {
    const int64_t rows = std::min(chunk_rows, t.rows - r0);
    st_->queue->begin_op(0);
    auto d = zeroed<DequantArgs>();
    d.t = t;
    d.out = wbuf;
    d.row0 = r0;
    d.nrows = rows;
    record(run<DequantArgs, launch_dequant>, d);
    auto g = zeroed<GemmArgs>();
    g.w = wbuf;
    g.type = int64_t(WeightType::f16);
    g.rows = rows;
    g.cols = t.cols;
    g.ldw = t.cols;
    g.x = xh;
    g.ldx = ld;
    g.y = y.ptr() + r0;
    g.ldy = t.rows;
    g.n = n;
    g.accumulate = accumulate;
    record(run<GemmArgs, launch_gemm>, g);
  }
}

}  // namespace sbits::kernels::cuda
