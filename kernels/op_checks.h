// Argument checks that every backend makes in the same words: each failure is a KernelError
// that names the op and says what was expected and what was found, e.g. "matmul: x holds 100
// floats, expected at least 512 (1 rows x 512)". Backends add the checks that depend on their
// own buffer, weight and cache types.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>

#include "kernels/backend.h"

namespace sbits::kernels {

template <class... Parts>
[[noreturn]] void fail(const char* op, const Parts&... parts) {
  std::ostringstream s;
  s << op << ": ";
  (s << ... << parts);
  throw KernelError(s.str());
}

// a * b for non-negative sizes, or a KernelError when the product does not fit a size_t.
inline size_t checked_mul(const char* op, int64_t a, int64_t b) {
  if (a < 0 || b < 0) fail(op, "negative size (", a, " x ", b, ")");
  size_t r = 0;
  if (__builtin_mul_overflow(size_t(a), size_t(b), &r)) fail(op, "size ", a, " x ", b, " overflows");
  return r;
}

// The buffer holds at least rows x cols floats.
inline void check_count(const char* op, const char* what, const Buffer& b, int64_t rows, int64_t cols) {
  const size_t need = checked_mul(op, rows, cols);
  if (b.count < need)
    fail(op, what, " holds ", b.count, " floats, expected at least ", need, " (", rows, " rows x ", cols, ")");
}

inline void check_count(const char* op, const char* what, const Buffer& b, size_t count) {
  if (b.count < count) fail(op, what, " holds ", b.count, " floats, expected at least ", count);
}

// n >= 0, and a row array when n > 0 (token ids, row indices, RowInfo).
inline void check_rows_pointer(const char* op, const void* p, int n) {
  if (n < 0) fail(op, "n must be >= 0, got ", n);
  if (n > 0 && !p) fail(op, "the row array is null for n=", n);
}

inline void check_layer(const char* op, const KvCacheDesc& d, int layer) {
  if (layer < 0 || layer >= d.n_layers) fail(op, "layer ", layer, " is outside [0, ", d.n_layers, ")");
}

// Every row's (slot, pos) lies inside the cache; checked for all rows before any write.
inline void check_cache_rows(const char* op, const KvCacheDesc& d, const RowInfo* rows, int n) {
  check_rows_pointer(op, rows, n);
  for (int r = 0; r < n; ++r) {
    if (rows[r].slot < 0 || rows[r].slot >= d.n_slots)
      fail(op, "rows[", r, "].slot = ", rows[r].slot, " is outside [0, ", d.n_slots, ")");
    if (rows[r].pos < 0 || rows[r].pos >= d.n_ctx)
      fail(op, "rows[", r, "].pos = ", rows[r].pos, " is outside [0, ", d.n_ctx, ") (slot ", rows[r].slot, ")");
  }
}

// rope's arguments: x ([n, n_heads * head_dim]) must hold n rows, positions are >= 0.
inline void check_rope_args(const char* op, const Buffer& x, int n, int n_heads, int head_dim, const RowInfo* rows,
                            float theta, RopeStyle style) {
  check_rows_pointer(op, rows, n);
  if (n_heads <= 0) fail(op, "n_heads must be positive, got ", n_heads);
  if (head_dim <= 0 || head_dim % 2 != 0) fail(op, "head_dim must be positive and even, got ", head_dim);
  if (!(theta > 0.0f) || !std::isfinite(theta)) fail(op, "theta must be finite and > 0, got ", theta);
  if (style != RopeStyle::neox && style != RopeStyle::interleaved) fail(op, "unknown rope style ", uint32_t(style));
  check_count(op, "x", x, n, int64_t(n_heads) * head_dim);
  for (int r = 0; r < n; ++r)
    if (rows[r].pos < 0) fail(op, "rows[", r, "].pos = ", rows[r].pos, " is negative");
}

// get_rows's arguments: every source row inside x (read as rows of `width`), out not x.
inline void check_get_rows_args(const char* op, const Buffer& x, const int32_t* src_rows, int n, int width,
                                const Buffer& out) {
  check_rows_pointer(op, src_rows, n);
  if (width <= 0) fail(op, "width must be positive, got ", width);
  if (&x == &out && n > 0) fail(op, "out must not be the same buffer as x (rows would overwrite each other)");
  check_count(op, "out", out, n, width);
  const int64_t x_rows = int64_t(x.count / size_t(width));
  for (int r = 0; r < n; ++r)
    if (src_rows[r] < 0 || src_rows[r] >= x_rows)
      fail(op, "src_rows[", r, "] = ", src_rows[r], " is outside x's rows [0, ", x_rows, ") (", x.count,
           " floats of width ", width, ")");
}

// attention's arguments: layer and rows inside the cache, a shape that matches it, q and out of
// n rows, and every row's position already stored; stored_end(slot) is one past the last
// stored position of that slot in `layer`.
template <class StoredEnd>
void check_attention_args(const char* op, const KvCacheDesc& d, int layer, int n, const RowInfo* rows,
                          const AttentionShape& shape, const Buffer& q, const Buffer& out, StoredEnd&& stored_end) {
  check_layer(op, d, layer);
  check_cache_rows(op, d, rows, n);
  if (shape.n_kv_heads != d.n_kv_heads || shape.head_dim != d.head_dim)
    fail(op, "shape has n_kv_heads=", shape.n_kv_heads, " head_dim=", shape.head_dim, ", the cache has n_kv_heads=",
         d.n_kv_heads, " head_dim=", d.head_dim);
  if (shape.n_heads <= 0 || shape.n_heads % shape.n_kv_heads != 0)
    fail(op, "n_heads=", shape.n_heads, " must be a positive multiple of n_kv_heads=", shape.n_kv_heads);
  const int64_t width = int64_t(shape.n_heads) * shape.head_dim;
  check_count(op, "q", q, n, width);
  check_count(op, "out", out, n, width);
  for (int r = 0; r < n; ++r) {
    const int32_t end = stored_end(rows[r].slot);
    if (rows[r].pos >= end)
      fail(op, "rows[", r, "] (slot ", rows[r].slot, ", pos ", rows[r].pos,
           ") attends to positions not stored yet: layer ", layer, " has positions < ", end, " of that slot");
  }
}

}  // namespace sbits::kernels
