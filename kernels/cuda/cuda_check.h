// Error handling shared by the CUDA backend's host code. Every CUDA and cuBLAS call goes through
// CUDA_CHECK / CUBLAS_CHECK, which throw sbits::kernels::KernelError naming the call, the error
// and the file and line: library code never aborts.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/backend.h"
#include "kernels/op_checks.h"

namespace sbits::kernels::cuda {

[[noreturn]] void throw_cuda_error(cudaError_t e, const char* expr, const char* file, int line);
[[noreturn]] void throw_cublas_error(cublasStatus_t e, const char* expr, const char* file, int line);

inline void check_cuda(cudaError_t e, const char* expr, const char* file, int line) {
  if (e != cudaSuccess) throw_cuda_error(e, expr, file, line);
}
inline void check_cublas(cublasStatus_t e, const char* expr, const char* file, int line) {
  if (e != CUBLAS_STATUS_SUCCESS) throw_cublas_error(e, expr, file, line);
}

// fail, checked_mul, check_count and the other checks all backends share: kernels/op_checks.h.

}  // namespace sbits::kernels::cuda

// The launch's own error is checked right after it (cudaGetLastError), so a bad configuration
// is reported at the op that caused it, not at the next synchronisation.
#define CUDA_CHECK(expr) ::sbits::kernels::cuda::check_cuda((expr), #expr, __FILE__, __LINE__)
#define CUBLAS_CHECK(expr) ::sbits::kernels::cuda::check_cublas((expr), #expr, __FILE__, __LINE__)
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())
