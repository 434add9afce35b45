#include "engine/backends.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "engine/model.h"
#include "kernels/cpu/cpu_backend.h"
#if defined(SBITS_HAVE_CUDA)
#include "kernels/cuda/cuda_backend.h"
#endif
#if defined(SBITS_HAVE_VULKAN)
#include "kernels/vulkan/vulkan_backend.h"
#endif

namespace sbits {

std::vector<std::string> available_backends() {
  std::vector<std::string> v;
#if defined(SBITS_HAVE_CUDA)
  v.push_back("cuda");
#endif
#if defined(SBITS_HAVE_VULKAN)
  v.push_back("vulkan");
#endif
  v.push_back("cpu");
  return v;
}

namespace {

[[noreturn]] void not_built(const std::string& name, const char* how) {
  throw EngineError(fmt::format("backend '{}' is not built into this binary (available: {}); {}", name,
                                fmt::join(available_backends(), ", "), how));
}

#if defined(SBITS_HAVE_VULKAN)
// "auto" takes a Vulkan device only when it is a real GPU: llvmpipe (a CPU device) is slower
// than the CPU backend.
bool vulkan_gpu_present() {
  for (const auto& d : kernels::vulkan_devices())
    if (d.type == "discrete" || d.type == "integrated") return true;
  return false;
}
#endif

}  // namespace

std::vector<std::string> list_devices() {
  std::vector<std::string> out;
#if defined(SBITS_HAVE_CUDA)
  for (int i = 0, n = kernels::cuda_device_count(); i < n; ++i) out.push_back(fmt::format("cuda {}", i));
#endif
#if defined(SBITS_HAVE_VULKAN)
  for (const auto& d : kernels::vulkan_devices())
    out.push_back(fmt::format("vulkan {}: {} ({}, {}, Vulkan {}.{}, {:.0f} GiB)", d.index, d.name, d.type, d.driver,
                              d.api_version >> 22, (d.api_version >> 12) & 0x3ff,
                              double(d.device_local_bytes) / double(1ull << 30)));
#endif
  out.push_back("cpu");
  return out;
}

std::unique_ptr<kernels::Backend> make_backend(const std::string& name, const BackendOptions& options) {
#if defined(SBITS_HAVE_CUDA)
  // "auto" takes the GPU when this machine has one; a GPU that exists but cannot be opened is an
  // error rather than a silent fall back to the CPU.
  if (name == "cuda" || (name == "auto" && kernels::cuda_device_count() > 0)) {
    try {
      return kernels::make_cuda_backend(options.device);
    } catch (const kernels::KernelError& e) {
      throw EngineError(fmt::format("backend '{}': {}", name, e.what()));
    }
  }
#endif
#if defined(SBITS_HAVE_VULKAN)
  if (name == "vulkan" || (name == "auto" && vulkan_gpu_present())) {
    try {
      return kernels::make_vulkan_backend(options.device);
    } catch (const kernels::KernelError& e) {
      throw EngineError(fmt::format("backend '{}': {}", name, e.what()));
    }
  }
#endif
  if (name == "cpu" || name == "auto") return kernels::make_cpu_backend(options.threads);
  if (name == "cuda") not_built(name, "configure with -DSBITS_CUDA=ON where the CUDA toolkit is installed");
  if (name == "vulkan")
    not_built(name, "configure with -DSBITS_VULKAN=ON where the Vulkan headers, loader and glslc are installed");
  throw EngineError(
      fmt::format("unknown backend '{}' (expected one of: cpu, cuda, vulkan, auto)", name));
}

}  // namespace sbits
