// Linked into every CUDA test binary: on a machine without a CUDA device the binary exits 77
// before any test runs, which ctest reports as skipped (never as passed).
#include <cstdio>
#include <cstdlib>

#include "kernels/cuda/cuda_backend.h"

namespace {

const bool kHaveDevice = [] {
  if (sbits::kernels::cuda_device_count() > 0) return true;
  std::fprintf(stderr, "no CUDA device: skipping the CUDA tests\n");
  std::fflush(stderr);
  std::_Exit(77);
}();

}  // namespace
