// matmul: threads split the output features (weight rows); every thread sees all n rows of x.
// Splitting W rather than x means each weight byte is read by exactly one thread, which is
// what matters in decode, where reading W is the whole cost.
#include "kernels/op_checks.h"
#include "kernels/cpu/cpu_backend_impl.h"

namespace sbits::kernels::cpu {
namespace {

// Weight rows per chunk: a multiple of 16 so that two threads never write the same 64-byte
// line of y (for y rows that start on a line); ~4 chunks per thread so a thread that loses its
// core to another process hands its share to the others; at most 256 rows so even a 32000-row
// vocabulary projection is spread evenly.
int64_t matmul_grain(int64_t rows, int threads) {
  const int64_t per = (rows + 4 * threads - 1) / (4 * int64_t(threads));
  return std::clamp<int64_t>((per + 15) / 16 * 16, 16, 256);
}

}  // namespace

void CpuBackend::matmul(const Weight& w, const Buffer& x, int n, Buffer& y, bool accumulate) {
  const char* op = "matmul";
  std::lock_guard<std::mutex> lock(op_mutex_);
  const CpuBuffer& xs = cpu_buffer(x, op, "x");
  CpuBuffer& ys = cpu_buffer(y, op, "y");
  if (n < 0) fail(op, "n must be >= 0, got ", n);
  check_count(op, "x", xs, n, w.cols);
  check_count(op, "y", ys, n, w.rows);
  if (&xs == &ys && n > 0) fail(op, "y must not be the same buffer as x");
  if (n == 0) return;
  if (w.type == WeightType::tiled) return matmul_tiled(w, xs, n, ys, accumulate);  // cpu_tiled.cpp
  const CpuWeight& wt = cpu_weight(w, op);
  MatmulArgs a;
  a.type = wt.type;
  a.w = wt.data;
  a.w_row_bytes = wt.row_bytes;
  a.k = wt.cols;
  a.x = xs.data();
  if (kernels_.bf16_decode_packed_x && wt.type == WeightType::bf16 && n <= kDecodeMaxRows) {
    packed_x_.resize(checked_mul(op, n, wt.cols));
    pack_pairs16(xs.data(), n, wt.cols, packed_x_.data());
    a.x = packed_x_.data();
  }
  a.n = n;
  a.y = ys.data();
  a.ldy = wt.rows;
  a.accumulate = accumulate;
  const size_t scratch_floats = n > kDecodeMaxRows ? matmul_scratch_floats(wt.cols) : 0;
  parallel_for(wt.rows, matmul_grain(wt.rows, pool_.size()), [&](int64_t b, int64_t e, int thread) {
    float* s = scratch_floats ? scratch(thread, scratch_floats) : nullptr;
    kernels_.matmul_rows(a, b, e, s);
  });
}

}  // namespace sbits::kernels::cpu
