// Argument checks for the CPU ops: every failure names the op and says what was expected and
// what was found, e.g. "matmul: x holds 100 floats, expected at least 512 (n=1 x 512 cols)".
#pragma once

#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>

#include "kernels/backend.h"

namespace sbits::kernels::cpu {

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

// Checks that a buffer holds at least rows x cols floats.
inline void check_count(const char* op, const char* what, const Buffer& b, int64_t rows, int64_t cols) {
  const size_t need = checked_mul(op, rows, cols);
  if (b.count < need)
    fail(op, what, " holds ", b.count, " floats, expected at least ", need, " (", rows, " rows x ", cols, ")");
}

inline void check_count(const char* op, const char* what, const Buffer& b, size_t count) {
  if (b.count < count) fail(op, what, " holds ", b.count, " floats, expected at least ", count);
}

}  // namespace sbits::kernels::cpu
