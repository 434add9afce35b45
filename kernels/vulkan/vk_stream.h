// Recording ops into one command buffer and submitting it.
//
// Every op becomes one dispatch (or copy) in the current command buffer, preceded by a global
// memory barrier: ops run in order, as the interface promises, and the barrier is cheap next
// to the memory-bound kernels. Host arguments go into a host-visible ring that lives until the
// submission completes; descriptor sets come from a pool reset at each submission. When the
// ring or the pool would overflow, what was recorded is submitted first (transparently).
#pragma once

#include <cstdint>
#include <initializer_list>

#include "kernels/vulkan/vk_device.h"

namespace sbits::kernels::vk {

// A range of a buffer bound to one shader binding.
struct BufRef {
  VkBuffer buffer = VK_NULL_HANDLE;
  VkDeviceSize offset = 0;
  VkDeviceSize range = VK_WHOLE_SIZE;
};

class Stream {
 public:
  explicit Stream(Context& ctx);
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  // Room for `ring_bytes` of staged arguments and `sets` dispatches in the current recording;
  // submits what was recorded first when they would not fit. Throws when a single op needs
  // more than the ring holds.
  void reserve(size_t ring_bytes, uint32_t sets, const char* op);
  // Copies host bytes into the ring (valid until the next submission completes).
  BufRef stage(const void* data, size_t bytes);
  void dispatch(const Pipeline& p, std::initializer_list<BufRef> bindings, const void* push, size_t push_bytes,
                uint32_t gx, uint32_t gy = 1, uint32_t gz = 1);
  void copy(VkBuffer src, VkDeviceSize src_off, VkBuffer dst, VkDeviceSize dst_off, VkDeviceSize bytes);
  void zero(VkBuffer dst, VkDeviceSize off, VkDeviceSize bytes);
  // Submits what was recorded and waits for it; nothing happens when nothing was recorded.
  void flush();
  bool pending() const { return recording_; }

  size_t ring_capacity() const { return kRingBytes; }
  uint64_t ops = 0, submits = 0;

 private:
  static constexpr size_t kRingBytes = size_t(32) << 20;
  static constexpr uint32_t kMaxSets = 1024;
  static constexpr uint32_t kMaxBindings = 8;
  void begin();
  void barrier();

  Context& ctx_;
  VkCommandPool pool_ = VK_NULL_HANDLE;
  VkCommandBuffer cmd_ = VK_NULL_HANDLE;
  VkFence fence_ = VK_NULL_HANDLE;
  VkDescriptorPool desc_pool_ = VK_NULL_HANDLE;
  DeviceBuffer ring_;
  size_t ring_used_ = 0;
  uint32_t sets_used_ = 0;
  bool recording_ = false;
  bool first_op_ = true;
};

}  // namespace sbits::kernels::vk
