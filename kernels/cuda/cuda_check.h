// Error handling shared by the CUDA backend's host code. Every CUDA and cuBLAS call goes through
// CUDA_CHECK / CUBLAS_CHECK, which throw sbits::kernels::KernelError naming the call, the error
// and the file and line: library code never aborts.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>

#include "kernels/backend.h"

namespace sbits::kernels::cuda {

template <class... Parts>
[[noreturn]] void fail(const char* op, const Parts&... parts) {
  std::ostringstream s;
  s << op << ": ";
  (s << ... << parts);
  throw KernelError(s.str());
}

[[noreturn]] void throw_cuda_error(cudaError_t e, const char* expr, const char* file, int line);
[[noreturn]] void throw_cublas_error(cublasStatus_t e, const char* expr, const char* file, int line);

inline void check_cuda(cudaError_t e, const char* expr, const char* file, int line) {
  if (e != cudaSuccess) throw_cuda_error(e, expr, file, line);
}
inline void check_cublas(cublasStatus_t e, const char* expr, const char* file, int line) {
  if (e != CUBLAS_STATUS_SUCCESS) throw_cublas_error(e, expr, file, line);
}

// a * b for non-negative sizes, or a KernelError when the product does not fit a size_t.
inline size_t checked_mul(const char* op, int64_t a, int64_t b) {
  if (a < 0 || b < 0) fail(op, "negative size (", a, " x ", b, ")");
  size_t r = 0;
  if (__builtin_mul_overflow(size_t(a), size_t(b), &r)) fail(op, "size ", a, " x ", b, " overflows");
  return r;
}

inline void check_count(const char* op, const char* what, const Buffer& b, int64_t rows, int64_t cols) {
  const size_t need = checked_mul(op, rows, cols);
  if (b.count < need)
    fail(op, what, " holds ", b.count, " floats, expected at least ", need, " (", rows, " rows x ", cols, ")");
}

inline void check_count(const char* op, const char* what, const Buffer& b, size_t count) {
  if (b.count < count) fail(op, what, " holds ", b.count, " floats, expected at least ", count);
}

}  // namespace sbits::kernels::cuda

// The launch's own error is checked right after it (cudaGetLastError), so a bad configuration
// is reported at the op that caused it, not at the next synchronisation.
#define CUDA_CHECK(expr) ::sbits::kernels::cuda::check_cuda((expr), #expr, __FILE__, __LINE__)
#define CUBLAS_CHECK(expr) ::sbits::kernels::cuda::check_cublas((expr), #expr, __FILE__, __LINE__)
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())
