#include "engine/backends.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "engine/model.h"
#include "kernels/cpu/cpu_backend.h"
#if defined(SBITS_HAVE_CUDA)
#include "kernels/cuda/cuda_backend.h"
#endif

namespace sbits {

std::vector<std::string> available_backends() {
#if defined(SBITS_HAVE_CUDA)
  return {"cuda", "cpu"};
#else
  return {"cpu"};
#endif
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
  if (name == "cpu" || name == "auto") return kernels::make_cpu_backend(options.threads);
  if (name == "cuda")
    throw EngineError(fmt::format("backend 'cuda' is not built into this binary (available: {}); configure with "
                                  "-DSBITS_CUDA=ON where the CUDA toolkit is installed",
                                  fmt::join(available_backends(), ", ")));
  if (name == "vulkan")
    throw EngineError(fmt::format("backend '{}' is not built into this binary (available: {}); the {} backend "
                                  "is not implemented yet",
                                  name, fmt::join(available_backends(), ", "), name));
  throw EngineError(
      fmt::format("unknown backend '{}' (expected one of: cpu, cuda, vulkan, auto)", name));
}

}  // namespace sbits
