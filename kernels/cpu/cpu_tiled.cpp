// The CPU backend's ops on tiled mixed-bitwidth weights (WeightType::tiled): upload (validate
// and copy the tile table), matmul and embed. The inner loops are in tiled_*.cpp.
//
// matmul splits the output rows like the dense matmul does, so every weight byte is read by
// one thread: decode (n <= kDecodeMaxRows) hands out strips of R rows, each walked tile by
// tile with the codes decoded in registers; prefill hands out chunks of kTiledPrefillRows rows,
// dequantized to f32 scratch and multiplied by the dense f32 kernel.
#include <cstring>

#include "kernels/cpu/check.h"
#include "kernels/cpu/cpu_backend_impl.h"
#include "kernels/cpu/tiled_kernels.h"

namespace sbits::kernels::cpu {
namespace {

void check_tiled_desc(const HostWeight& w) {
  const char* op = "upload";
  if (!w.tiled) fail(op, "a tiled weight needs HostWeight::tiled (the parsed tile table)");
  const quant::TiledDesc& d = *w.tiled;
  if (d.rows != w.rows || d.cols != w.cols)
    fail(op, "tiled description is ", d.rows, " x ", d.cols, ", the weight ", w.rows, " x ", w.cols);
  if (d.tile_rows < 1 || d.tile_rows > 4096 || d.tile_cols < 32 || d.tile_cols > 4096 || d.tile_cols % 32 ||
      d.group < 32 || d.group % 32 || d.tile_cols % d.group)
    fail(op, "tile ", d.tile_rows, " x ", d.tile_cols, " with group ", d.group,
         ": expected R in 1..4096, C a multiple of 32 up to 4096, G a multiple of 32 dividing C");
  if (d.tiles_r != (d.rows + d.tile_rows - 1) / d.tile_rows || d.tiles_c != (d.cols + d.tile_cols - 1) / d.tile_cols)
    fail(op, "tile grid ", d.tiles_r, " x ", d.tiles_c, " does not match ", d.rows, " x ", d.cols);
  if (!d.data || !d.bits || !d.offsets || d.data != w.data) fail(op, "tiled description: null or mismatched pointers");
  if (reinterpret_cast<uintptr_t>(d.data) % 16 != 0) fail(op, "tiled data must be 16-byte aligned");
  for (int64_t tr = 0; tr < d.tiles_r; ++tr) {
    for (int64_t tc = 0; tc < d.tiles_c; ++tc) {
      const int64_t i = tr * d.tiles_c + tc;
      const int bits = d.bits[i];
      if (!quant::is_tile_bits(bits)) fail(op, "tile (", tr, ", ", tc, "): bitwidth ", bits, " has no kernel");
      const int64_t rows = std::min<int64_t>(d.tile_rows, d.rows - tr * d.tile_rows);
      const int64_t cols = std::min<int64_t>(d.tile_cols, d.cols - tc * d.tile_cols);
      const uint64_t size = quant::tile_bytes(rows, cols, d.group, bits);
      if (d.offsets[i] % 16 != 0 || d.offsets[i] > w.bytes || size > w.bytes - d.offsets[i])
        fail(op, "tile (", tr, ", ", tc, ") at offset ", d.offsets[i], " (+", size, " bytes) is outside the ",
             w.bytes, " bytes of the weight or misaligned");
    }
  }
}

}  // namespace

std::unique_ptr<Weight> CpuBackend::upload_tiled(const HostWeight& w) {
  check_tiled_desc(w);
  auto out = std::make_unique<CpuTiledWeight>();
  out->type = WeightType::tiled;
  out->rows = w.rows;
  out->cols = w.cols;
  out->desc = *w.tiled;
  const size_t n = size_t(out->desc.tiles_r * out->desc.tiles_c);
  out->bits.assign(w.tiled->bits, w.tiled->bits + n);
  out->offsets.assign(w.tiled->offsets, w.tiled->offsets + n);
  out->desc.bits = out->bits.data();
  out->desc.offsets = out->offsets.data();
  return out;
}

void CpuBackend::matmul_tiled(const Weight& w, const CpuBuffer& xs, int n, CpuBuffer& ys, bool accumulate) {
  const auto* wt = dynamic_cast<const CpuTiledWeight*>(&w);
  if (!wt) fail("matmul", "the tiled weight was not uploaded to the CPU backend");
  const quant::TiledDesc& d = wt->desc;
  const TiledKernels& k = tiled_kernels_for(kernels_.isa);
  if (n <= kDecodeMaxRows) {
    const size_t floats = tiled_decode_scratch_floats(d);
    parallel_for(d.tiles_r, 1, [&](int64_t b, int64_t e, int thread) {
      float* s = scratch(thread, floats);
      for (int64_t tr = b; tr < e; ++tr) tiled_decode_strip(k, d, tr, xs.data(), n, ys.data(), d.rows, accumulate, s);
    });
    return;
  }
  const size_t floats = size_t(kTiledPrefillRows) * size_t(d.cols);
  parallel_for(d.rows, kTiledPrefillRows, [&](int64_t b, int64_t e, int thread) {
    float* s = scratch(thread, floats);
    for (int64_t c0 = b; c0 < e; c0 += kTiledPrefillRows) {  // one chunk, or all rows when run inline
      const int64_t c1 = std::min<int64_t>(e, c0 + kTiledPrefillRows);
      for (int64_t o = c0; o < c1; ++o) tiled_dequantize_row(k, d, o, s + (o - c0) * d.cols);
      MatmulArgs a;
      a.type = WeightType::f32;
      a.w = reinterpret_cast<const uint8_t*>(s);
      a.w_row_bytes = size_t(d.cols) * sizeof(float);
      a.k = d.cols;
      a.x = xs.data();
      a.n = n;
      a.y = ys.data() + c0;
      a.ldy = d.rows;
      a.accumulate = accumulate;
      kernels_.matmul_rows(a, 0, c1 - c0, nullptr);  // f32 rows need no conversion scratch
    }
  });
}

void CpuBackend::embed_tiled(const Weight& table, const int32_t* ids, int n, CpuBuffer& out) {
  const auto* wt = dynamic_cast<const CpuTiledWeight*>(&table);
  if (!wt) fail("embed", "the tiled table was not uploaded to the CPU backend");
  const TiledKernels& k = tiled_kernels_for(kernels_.isa);
  parallel_for(n, std::max<int64_t>(1, (1 << 15) / wt->cols), [&](int64_t b, int64_t e, int) {
    for (int64_t r = b; r < e; ++r) tiled_dequantize_row(k, wt->desc, ids[r], out.data() + r * wt->cols);
  });
}

}  // namespace sbits::kernels::cpu
