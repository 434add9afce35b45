// Error helpers of the Vulkan backend: every failure is a KernelError with context.
#pragma once

#include <vulkan/vulkan.h>

#include "kernels/backend.h"
#include "kernels/op_checks.h"

namespace sbits::kernels::vk {

// fail() and the checks all backends share: kernels/op_checks.h.

const char* vk_result_name(VkResult r);

// VK_CHECK(call): throws KernelError naming the call, the result and the source line.
[[noreturn]] void vk_failed(VkResult r, const char* call, const char* file, int line);
#define VK_CHECK(call)                                                            \
  do {                                                                            \
    const VkResult sbits_vk_r_ = (call);                                          \
    if (sbits_vk_r_ != VK_SUCCESS) ::sbits::kernels::vk::vk_failed(sbits_vk_r_, #call, __FILE__, __LINE__); \
  } while (0)

}  // namespace sbits::kernels::vk
