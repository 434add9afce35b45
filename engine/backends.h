// Choosing a compute backend by name ("cpu", "cuda", "vulkan", "auto").
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "kernels/backend.h"

namespace sbits {

struct BackendOptions {
  int threads = 0;  // CPU threads; 0 = all cores
  int device = 0;   // GPU index for GPU backends (list_devices() numbers them)
};

// The backends compiled into this build, in "auto" preference order (GPUs first).
std::vector<std::string> available_backends();

// One line per device the compiled backends can use, e.g. "vulkan 0: NVIDIA H100 (discrete,
// ...)", GPUs in the order --device numbers them, then "cpu". Never throws.
std::vector<std::string> list_devices();

// Throws EngineError naming the backend and the ones available when it is unknown or was not
// built, or when its device cannot be opened.
std::unique_ptr<kernels::Backend> make_backend(const std::string& name, const BackendOptions& options = {});

}  // namespace sbits
