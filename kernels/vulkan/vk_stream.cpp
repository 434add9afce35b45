// Command recording and submission; see vk_stream.h.
#include "kernels/vulkan/vk_stream.h"

#include <cstring>
#include <vector>

namespace sbits::kernels::vk {

Stream::Stream(Context& ctx) : ctx_(ctx) {
  VkCommandPoolCreateInfo pi{VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO};
  pi.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT;
  pi.queueFamilyIndex = ctx.queue_family;
  VK_CHECK(vkCreateCommandPool(ctx.device, &pi, nullptr, &pool_));
  VkCommandBufferAllocateInfo ai{VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO};
  ai.commandPool = pool_;
  ai.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
  ai.commandBufferCount = 1;
  VK_CHECK(vkAllocateCommandBuffers(ctx.device, &ai, &cmd_));
  VkFenceCreateInfo fi{VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
  VK_CHECK(vkCreateFence(ctx.device, &fi, nullptr, &fence_));
  VkDescriptorPoolSize size{VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, kMaxSets * kMaxBindings};
  VkDescriptorPoolCreateInfo di{VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO};
  di.maxSets = kMaxSets;
  di.poolSizeCount = 1;
  di.pPoolSizes = &size;
  VK_CHECK(vkCreateDescriptorPool(ctx.device, &di, nullptr, &desc_pool_));
  ring_ = DeviceBuffer(ctx, kRingBytes, true, "argument ring");
}

Stream::~Stream() {
  try {
    flush();
  } catch (...) {  // a destructor cannot report; the device is idle or lost either way
  }
  vkDeviceWaitIdle(ctx_.device);
  vkDestroyDescriptorPool(ctx_.device, desc_pool_, nullptr);
  vkDestroyFence(ctx_.device, fence_, nullptr);
  vkDestroyCommandPool(ctx_.device, pool_, nullptr);
}

void Stream::begin() {
  if (recording_) return;
  VkCommandBufferBeginInfo bi{VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
  bi.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
  VK_CHECK(vkBeginCommandBuffer(cmd_, &bi));
  recording_ = true;
  first_op_ = true;
}

void Stream::barrier() {
  if (first_op_) {  // the submission itself orders us after earlier submissions and host writes
    first_op_ = false;
    return;
  }
  VkMemoryBarrier mb{VK_STRUCTURE_TYPE_MEMORY_BARRIER};
  mb.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
  mb.dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_READ_BIT |
                     VK_ACCESS_TRANSFER_WRITE_BIT;
  const VkPipelineStageFlags st = VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT;
  vkCmdPipelineBarrier(cmd_, st, st, 0, 1, &mb, 0, nullptr, 0, nullptr);
}

void Stream::reserve(size_t ring_bytes, uint32_t sets, const char* op) {
  const size_t need = ring_bytes + 256 * 4;  // alignment slack of a few stage() calls
  if (need > kRingBytes || sets > kMaxSets)
    fail(op, "one call needs ", ring_bytes, " bytes of staged arguments and ", sets,
         " dispatches; the backend stages at most ", kRingBytes, " bytes and ", kMaxSets);
  if (ring_used_ + need > kRingBytes || sets_used_ + sets > kMaxSets) flush();
  begin();
}

BufRef Stream::stage(const void* data, size_t bytes) {
  // 256: the largest minStorageBufferOffsetAlignment the spec allows.
  const size_t off = (ring_used_ + 255) & ~size_t(255);
  if (off + bytes > kRingBytes) fail("stage", "argument ring overflow (", off + bytes, " > ", kRingBytes, ")");
  if (bytes) std::memcpy(static_cast<uint8_t*>(ring_.mapped) + off, data, bytes);
  ring_used_ = off + bytes;
  return BufRef{ring_.buffer, off, std::max<size_t>(bytes, 16)};
}

void Stream::dispatch(const Pipeline& p, std::initializer_list<BufRef> bindings, const void* push,
                      size_t push_bytes, uint32_t gx, uint32_t gy, uint32_t gz) {
  if (bindings.size() != p.n_bindings) fail("dispatch", "pipeline takes ", p.n_bindings, " buffers, got ", bindings.size());
  if (gx == 0 || gy == 0 || gz == 0) return;
  const uint32_t max_g = ctx_.props.limits.maxComputeWorkGroupCount[0];
  if (gx > max_g || gy > ctx_.props.limits.maxComputeWorkGroupCount[1])
    fail("dispatch", "grid ", gx, " x ", gy, " exceeds the device's ", max_g, " workgroups per dimension");
  begin();
  if (sets_used_ >= kMaxSets) fail("dispatch", "descriptor pool exhausted (reserve() was not called)");
  VkDescriptorSetAllocateInfo ai{VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO};
  ai.descriptorPool = desc_pool_;
  ai.descriptorSetCount = 1;
  ai.pSetLayouts = &p.set_layout;
  VkDescriptorSet set = VK_NULL_HANDLE;
  VK_CHECK(vkAllocateDescriptorSets(ctx_.device, &ai, &set));
  ++sets_used_;
  VkDescriptorBufferInfo infos[kMaxBindings];
  VkWriteDescriptorSet writes[kMaxBindings];
  uint32_t i = 0;
  for (const BufRef& b : bindings) {
    infos[i] = {b.buffer, b.offset, b.range};
    writes[i] = {VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET};
    writes[i].dstSet = set;
    writes[i].dstBinding = i;
    writes[i].descriptorCount = 1;
    writes[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
    writes[i].pBufferInfo = &infos[i];
    ++i;
  }
  vkUpdateDescriptorSets(ctx_.device, i, writes, 0, nullptr);
  barrier();
  vkCmdBindPipeline(cmd_, VK_PIPELINE_BIND_POINT_COMPUTE, p.pipeline);
  vkCmdBindDescriptorSets(cmd_, VK_PIPELINE_BIND_POINT_COMPUTE, p.layout, 0, 1, &set, 0, nullptr);
  if (push_bytes) vkCmdPushConstants(cmd_, p.layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, uint32_t(push_bytes), push);
  vkCmdDispatch(cmd_, gx, gy, gz);
  ++ops;
}

void Stream::copy(VkBuffer src, VkDeviceSize src_off, VkBuffer dst, VkDeviceSize dst_off, VkDeviceSize bytes) {
  if (!bytes) return;
  begin();
  barrier();
  VkBufferCopy c{src_off, dst_off, bytes};
  vkCmdCopyBuffer(cmd_, src, dst, 1, &c);
  ++ops;
}

void Stream::zero(VkBuffer dst, VkDeviceSize off, VkDeviceSize bytes) {
  if (!bytes) return;
  begin();
  barrier();
  vkCmdFillBuffer(cmd_, dst, off, bytes, 0);  // off and bytes are multiples of 4
  ++ops;
}

void Stream::flush() {
  if (!recording_) return;
  // Make device writes visible to the host (reads of mapped staging memory after the wait).
  VkMemoryBarrier mb{VK_STRUCTURE_TYPE_MEMORY_BARRIER};
  mb.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
  mb.dstAccessMask = VK_ACCESS_HOST_READ_BIT;
  vkCmdPipelineBarrier(cmd_, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                       VK_PIPELINE_STAGE_HOST_BIT, 0, 1, &mb, 0, nullptr, 0, nullptr);
  recording_ = false;
  VK_CHECK(vkEndCommandBuffer(cmd_));
  VkSubmitInfo si{VK_STRUCTURE_TYPE_SUBMIT_INFO};
  si.commandBufferCount = 1;
  si.pCommandBuffers = &cmd_;
  VK_CHECK(vkQueueSubmit(ctx_.queue, 1, &si, fence_));
  ++submits;
  const VkResult r = vkWaitForFences(ctx_.device, 1, &fence_, VK_TRUE, UINT64_MAX);
  // Reset state before reporting, so that the stream stays usable (or at least consistent).
  vkResetFences(ctx_.device, 1, &fence_);
  vkResetCommandBuffer(cmd_, 0);
  vkResetDescriptorPool(ctx_.device, desc_pool_, 0);
  ring_used_ = 0;
  sets_used_ = 0;
  VK_CHECK(r);
}

}  // namespace sbits::kernels::vk
