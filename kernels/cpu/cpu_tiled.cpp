// The CPU backend's ops on tiled mixed-bitwidth weights (WeightType::tiled): upload (validate
// and copy the tile table), matmul and embed. The inner loops are in tiled_*.cpp.
//
// matmul splits the output rows like the dense matmul does, so every weight byte is read by
// one thread: decode (n <= kDecodeMaxRows) hands out strips of R rows, each walked tile by
// tile with the codes decoded in registers; prefill hands out chunks of kTiledPrefillRows rows,
// dequantized to f32 scratch and multiplied by the dense f32 kernel.
#include <cstring>

#include "kernels/op_checks.h"
#include "kernels/cpu/cpu_backend_impl.h"
#include "kernels/cpu/tiled_kernels.h"
#include "kernels/quant/tiled_check.h"

namespace sbits::kernels::cpu {

std::unique_ptr<Weight> CpuBackend::upload_tiled(const HostWeight& w) {
  quant::check_tiled_desc(w, /*in_place=*/true);
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
