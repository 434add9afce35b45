// Row-wise and element-wise ops: embed, get_rows, rmsnorm, rope, swiglu, add. These are
// memory-bound or tiny next to matmul, so they are plain C++ (the compiler's baseline SIMD);
// only swiglu, which needs exp, has an AVX2 kernel. Large calls are split across the pool.
#include <cmath>
#include <cstring>

#include "kernels/op_checks.h"
#include "kernels/cpu/cpu_backend_impl.h"

namespace sbits::kernels::cpu {
namespace {

// Elements per chunk for element-wise work: large enough that the fork-join (a few
// microseconds) is small against the chunk, small enough to spread a prefill over all cores.
constexpr int64_t kElementGrain = 1 << 15;

int64_t rows_per_chunk(int64_t width) { return std::max<int64_t>(1, kElementGrain / std::max<int64_t>(width, 1)); }

// Sum of squares in double: exact products of floats, and no overflow for |x| up to 1e150.
// Four partial sums keep the adds independent.
double sum_squares(const float* x, int64_t n) {
  double s[4] = {0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (int l = 0; l < 4; ++l) s[l] += double(x[i + l]) * double(x[i + l]);
  for (; i < n; ++i) s[0] += double(x[i]) * double(x[i]);
  return (s[0] + s[1]) + (s[2] + s[3]);
}

}  // namespace

void CpuBackend::embed(const Weight& table, const int32_t* ids, int n, Buffer& out) {
  const char* op = "embed";
  std::lock_guard<std::mutex> lock(op_mutex_);
  CpuBuffer& o = cpu_buffer(out, op, "out");
  check_rows_pointer(op, ids, n);
  check_count(op, "out", o, n, table.cols);
  for (int r = 0; r < n; ++r)
    if (ids[r] < 0 || ids[r] >= table.rows)
      fail(op, "ids[", r, "] = ", ids[r], " is outside the table's rows [0, ", table.rows, ")");
  if (table.type == WeightType::tiled) return embed_tiled(table, ids, n, o);  // cpu_tiled.cpp
  const CpuWeight& t = cpu_weight(table, op);
  parallel_for(n, rows_per_chunk(t.cols), [&](int64_t b, int64_t e, int) {
    for (int64_t r = b; r < e; ++r)
      kernels_.convert_to_f32(t.type, t.data + size_t(ids[r]) * t.row_bytes, o.data() + r * t.cols, size_t(t.cols));
  });
}

void CpuBackend::get_rows(const Buffer& x, const int32_t* src_rows, int n, int width, Buffer& out) {
  const char* op = "get_rows";
  std::lock_guard<std::mutex> lock(op_mutex_);
  const CpuBuffer& xs = cpu_buffer(x, op, "x");
  CpuBuffer& o = cpu_buffer(out, op, "out");
  check_get_rows_args(op, xs, src_rows, n, width, o);
  for (int r = 0; r < n; ++r)
    std::memcpy(o.data() + int64_t(r) * width, xs.data() + int64_t(src_rows[r]) * width, size_t(width) * sizeof(float));
}

void CpuBackend::rmsnorm(const Buffer& x, const Weight& w, float eps, int n, Buffer& out) {
  const char* op = "rmsnorm";
  std::lock_guard<std::mutex> lock(op_mutex_);
  const CpuWeight& wt = cpu_weight(w, op);
  const CpuBuffer& xs = cpu_buffer(x, op, "x");
  CpuBuffer& o = cpu_buffer(out, op, "out");
  if (n < 0) fail(op, "n must be >= 0, got ", n);
  if (wt.rows != 1) fail(op, "the weight must be 1 row (a vector), got ", wt.rows, " x ", wt.cols);
  if (!(eps >= 0.0f) || !std::isfinite(eps)) fail(op, "eps must be finite and >= 0, got ", eps);
  const int64_t width = wt.cols;
  check_count(op, "x", xs, n, width);
  check_count(op, "out", o, n, width);
  norm_weight_.resize(size_t(width));
  kernels_.convert_to_f32(wt.type, wt.data, norm_weight_.data(), size_t(width));
  const float* g = norm_weight_.data();
  parallel_for(n, rows_per_chunk(width), [&](int64_t b, int64_t e, int) {
    for (int64_t r = b; r < e; ++r) {
      const float* xr = xs.data() + r * width;
      float* yr = o.data() + r * width;  // may be xr: each element is read before it is written
      const double ms = sum_squares(xr, width) / double(width);
      const float inv = float(1.0 / std::sqrt(ms + double(eps)));
      for (int64_t i = 0; i < width; ++i) yr[i] = xr[i] * inv * g[i];
    }
  });
}

// Rotary embedding. The angle pos * theta^(-2i/hd) is formed in double: at pos ~ 1e5 an f32
// angle would already be off by ~0.01 rad. cos and sin are evaluated in double, then rounded to
// float for the rotation itself.
void CpuBackend::rope(Buffer& x, int n, int n_heads, int head_dim, const RowInfo* rows, float theta,
                      RopeStyle style) {
  const char* op = "rope";
  std::lock_guard<std::mutex> lock(op_mutex_);
  CpuBuffer& xs = cpu_buffer(x, op, "x");
  check_rope_args(op, xs, n, n_heads, head_dim, rows, theta, style);
  const int64_t width = int64_t(n_heads) * head_dim;
  const int half = head_dim / 2;
  rope_freq_.resize(size_t(half));
  for (int i = 0; i < half; ++i) rope_freq_[size_t(i)] = std::pow(double(theta), -2.0 * i / head_dim);
  // The pairs (a, b) of dimension i: neox (i, i + hd/2), interleaved (2i, 2i + 1).
  const int stride_a = style == RopeStyle::neox ? 1 : 2;
  const int offset_b = style == RopeStyle::neox ? half : 1;
  parallel_for(n, std::max<int64_t>(1, rows_per_chunk(width) / 8), [&](int64_t b, int64_t e, int thread) {
    float* cs = scratch(thread, size_t(head_dim));
    float* sn = cs + half;
    for (int64_t r = b; r < e; ++r) {
      for (int i = 0; i < half; ++i) {
        const double angle = double(rows[r].pos) * rope_freq_[size_t(i)];
        cs[i] = float(std::cos(angle));
        sn[i] = float(std::sin(angle));
      }
      for (int h = 0; h < n_heads; ++h) {
        float* v = xs.data() + r * width + int64_t(h) * head_dim;
        for (int i = 0; i < half; ++i) {
          float& a = v[i * stride_a];
          float& c = v[i * stride_a + offset_b];
          const float a0 = a, c0 = c;
          a = a0 * cs[i] - c0 * sn[i];
          c = a0 * sn[i] + c0 * cs[i];
        }
      }
    }
  });
}

void CpuBackend::swiglu(const Buffer& gate, const Buffer& up, size_t count, Buffer& out) {
  const char* op = "swiglu";
  std::lock_guard<std::mutex> lock(op_mutex_);
  const CpuBuffer& g = cpu_buffer(gate, op, "gate");
  const CpuBuffer& u = cpu_buffer(up, op, "up");
  CpuBuffer& o = cpu_buffer(out, op, "out");
  check_count(op, "gate", g, count);
  check_count(op, "up", u, count);
  check_count(op, "out", o, count);
  parallel_for(int64_t(count), kElementGrain, [&](int64_t b, int64_t e, int) {
    kernels_.swiglu(g.data() + b, u.data() + b, o.data() + b, size_t(e - b));
  });
}

void CpuBackend::add(Buffer& x, const Buffer& y, size_t count) {
  const char* op = "add";
  std::lock_guard<std::mutex> lock(op_mutex_);
  CpuBuffer& xs = cpu_buffer(x, op, "x");
  const CpuBuffer& ys = cpu_buffer(y, op, "y");
  check_count(op, "x", xs, count);
  check_count(op, "y", ys, count);
  parallel_for(int64_t(count), kElementGrain, [&](int64_t b, int64_t e, int) {
    float* xp = xs.data();
    const float* yp = ys.data();
    for (int64_t i = b; i < e; ++i) xp[i] += yp[i];
  });
}

}  // namespace sbits::kernels::cpu
