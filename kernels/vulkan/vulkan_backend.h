// The Vulkan backend: every op of kernels/backend.h as compute shaders on one Vulkan device
// (AMD, Intel, NVIDIA desktop drivers; Mesa's llvmpipe on machines without a GPU, which is how
// CI runs the tests). Weights, activations and the KV cache live in device memory.
//
// Ownership: upload() copies the weight to the device, so the HostWeight bytes may be released
// afterwards. Weights, buffers and KV caches keep the device alive; they may outlive the
// Backend that made them but must not be passed to another backend.
//
// Execution: ops are recorded into one command buffer when called; host arguments (token ids,
// row positions, rotary angles, small writes) are copied at once into a host-visible ring, so
// the caller's arrays may change after the call. read(), synchronize() and top_k() submit what
// was recorded and wait for it. A decode step is therefore one submission; when a step repeats
// the previous one's ops on the same buffers (only the staged values differ), its command
// buffer is replayed instead of recorded again (SBITS_VULKAN_REPLAY=0 turns that off).
//
// Threading: one Backend may be called from several threads; its ops are serialized.
//
// Failure: invalid arguments throw KernelError before anything is recorded, naming the op, the
// expected and the found values. Vulkan errors throw KernelError with the call, the VkResult
// and the source line (VK_CHECK). Nothing aborts.
//
// Validation: SBITS_VULKAN_VALIDATION=1 (or a debug build) enables VK_LAYER_KHRONOS_validation
// when it is installed, with synchronization validation (SBITS_VULKAN_SYNC_VALIDATION=0: without);
// every message of severity error is counted (vulkan_stats) and printed to stderr.
//
// KV cache layout (K and V separate arrays): [layer][slot][kv_head][pos][head_dim], f16
// (default) or f32, as on the CPU.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/backend.h"

namespace sbits::kernels {

struct VulkanDeviceInfo {
  int index = 0;            // what make_vulkan_backend takes
  std::string name;
  std::string type;         // "discrete", "integrated", "virtual", "cpu", "other"
  std::string driver;       // driver name and version, when the driver reports them
  uint32_t api_version = 0;
  uint64_t device_local_bytes = 0;
};

// The Vulkan devices this process can use, discrete GPUs first (then integrated, virtual,
// CPU), which is also the order of the indices make_vulkan_backend takes. Empty when there is
// no loader, no driver or no device. Never throws.
std::vector<VulkanDeviceInfo> vulkan_devices();

// Opens device `device` of vulkan_devices() (0 = the preferred one). Throws KernelError naming
// the device and the reason when it does not exist or cannot be initialised.
std::unique_ptr<Backend> make_vulkan_backend(int device = 0);

// What the backend did since it was made (for tests and benchmarks).
struct VulkanStats {
  uint64_t ops = 0;                // dispatches and copies recorded
  uint64_t submits = 0;            // command buffers submitted
  uint64_t replays = 0;            // submissions that replayed the previous command buffer
  uint64_t barriers = 0;           // barriers recorded between ops (replayed ones not counted)
  uint64_t validation_errors = 0;  // messages of severity error from the validation layer
  bool validation = false;         // the validation layer is enabled
  bool subgroup_reductions = false;  // the shaders reduce with subgroup arithmetic
  bool integer_dot = false;          // the split matvec multiplies by integer dot products
  bool cooperative_matrix = false;   // the prefill GEMM on tiled weights uses matrix units (f16)
  uint64_t device_bytes = 0;       // device memory held now
};

// Throws KernelError when `backend` is not a Vulkan backend.
VulkanStats vulkan_stats(const Backend& backend);

// For benchmarks: seconds per device-to-device copy of `bytes` (vkCmdCopyBuffer between two
// device-local buffers), `iters` copies recorded in one submission, host wall time. Throws
// KernelError when `backend` is not a Vulkan backend.
double vulkan_copy_seconds(Backend& backend, size_t bytes, int iters);
// The same through a compute shader (uvec4 loads and stores, a grid of 4 workgroups per 1 MiB
// up to 65535): what the shader cores can stream, the baseline the matvec benchmark compares with.
double vulkan_compute_copy_seconds(Backend& backend, size_t bytes, int iters);

}  // namespace sbits::kernels
