#include "engine/backends.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "engine/model.h"
#include "kernels/cpu/cpu_backend.h"

namespace sbits {

std::vector<std::string> available_backends() { return {"cpu"}; }

std::unique_ptr<kernels::Backend> make_backend(const std::string& name, const BackendOptions& options) {
  if (name == "cpu" || name == "auto") return kernels::make_cpu_backend(options.threads);
  if (name == "cuda" || name == "vulkan")
    throw EngineError(fmt::format("backend '{}' is not built into this binary (available: {}); the {} backend "
                                  "is not implemented yet",
                                  name, fmt::join(available_backends(), ", "), name));
  throw EngineError(
      fmt::format("unknown backend '{}' (expected one of: cpu, cuda, vulkan, auto)", name));
}

}  // namespace sbits
