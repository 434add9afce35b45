// Linked into every Vulkan test binary: on a machine without a Vulkan device (no loader, no
// driver, no device) the binary exits 77 before any test runs, which ctest reports as skipped
// (never as passed).
#include <cstdio>
#include <cstdlib>

#include "kernels/vulkan/vulkan_backend.h"

namespace {

const bool kHaveDevice = [] {
  if (!sbits::kernels::vulkan_devices().empty()) return true;
  std::fprintf(stderr, "no Vulkan device: skipping the Vulkan tests\n");
  std::fflush(stderr);
  std::_Exit(77);
}();

}  // namespace
