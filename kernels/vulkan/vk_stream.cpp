// Command recording, submission and replay; see vk_stream.h.
#include "kernels/vulkan/vk_stream.h"

#include <cstdlib>
#include <cstring>
#include <string_view>

namespace sbits::kernels::vk {

bool Stream::Op::operator==(const Op& o) const {
  if (kind != o.kind || pipeline != o.pipeline || n_bindings != o.n_bindings || push_bytes != o.push_bytes ||
      src != o.src || dst != o.dst || src_off != o.src_off || dst_off != o.dst_off || bytes != o.bytes ||
      grid[0] != o.grid[0] || grid[1] != o.grid[1] || grid[2] != o.grid[2])
    return false;
  for (uint32_t i = 0; i < n_bindings; ++i)
    if (bindings[i].buffer != o.bindings[i].buffer || bindings[i].offset != o.bindings[i].offset ||
        bindings[i].range != o.bindings[i].range)
      return false;
  return std::memcmp(push.data(), o.push.data(), push_bytes) == 0;
}

Stream::Stream(Context& ctx) : ctx_(ctx) {
  VkCommandPoolCreateInfo pi{VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO};
  pi.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT;
  pi.queueFamilyIndex = ctx.queue_family;
  VK_CHECK(vkCreateCommandPool(ctx.device, &pi, nullptr, &cmd_pool_));
  VkFenceCreateInfo fi{VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
  VK_CHECK(vkCreateFence(ctx.device, &fi, nullptr, &fence_));
  for (Slot& s : slots_) {
    VkCommandBufferAllocateInfo ai{VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO};
    ai.commandPool = cmd_pool_;
    ai.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
    ai.commandBufferCount = 1;
    VK_CHECK(vkAllocateCommandBuffers(ctx.device, &ai, &s.cmd));
    VkDescriptorPoolSize size{VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, kMaxSets * kMaxBindings};
    VkDescriptorPoolCreateInfo di{VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO};
    di.maxSets = kMaxSets;
    di.poolSizeCount = 1;
    di.pPoolSizes = &size;
    VK_CHECK(vkCreateDescriptorPool(ctx.device, &di, nullptr, &s.pool));
  }
  ring_ = DeviceBuffer(ctx, kRingBytes, true, "argument ring");
  const char* e = std::getenv("SBITS_VULKAN_REPLAY");
  replay_enabled_ = !(e && std::string_view(e) == "0");
  profiler_ = Profiler::create(ctx, kMaxSets);
}

Stream::~Stream() {
  try {
    flush();
  } catch (...) {  // a destructor cannot report; the device is idle or lost either way
  }
  vkDeviceWaitIdle(ctx_.device);
  profiler_.reset();  // prints
  for (Slot& s : slots_) vkDestroyDescriptorPool(ctx_.device, s.pool, nullptr);
  vkDestroyFence(ctx_.device, fence_, nullptr);
  vkDestroyCommandPool(ctx_.device, cmd_pool_, nullptr);
}

void Stream::reset_slot(Slot& s) {
  VK_CHECK(vkResetCommandBuffer(s.cmd, 0));
  VK_CHECK(vkResetDescriptorPool(ctx_.device, s.pool, 0));
}

void Stream::start_recording() {
  Slot& s = slots_[rec_];
  reset_slot(s);
  VkCommandBufferBeginInfo bi{VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};  // not one-time: it may be replayed
  VK_CHECK(vkBeginCommandBuffer(s.cmd, &bi));
  if (profiler_) profiler_->begin(s.cmd, rec_);
  recording_ = true;
  first_op_ = true;
  recorded_ = 0;
  for (const Op& op : ops_) record(op);
}

void Stream::accesses(const Op& op, std::vector<Access>& out) {
  out.clear();
  auto range = [](VkBuffer b, VkDeviceSize off, VkDeviceSize len, bool write) {
    return Access{b, off, len == VK_WHOLE_SIZE ? VK_WHOLE_SIZE : off + len, write};
  };
  if (op.kind == Kind::copy) {
    out.push_back(range(op.src, op.src_off, op.bytes, false));
    out.push_back(range(op.dst, op.dst_off, op.bytes, true));
  } else if (op.kind == Kind::zero) {
    out.push_back(range(op.dst, op.dst_off, op.bytes, true));
  } else {
    for (uint32_t i = 0; i < op.n_bindings; ++i)
      out.push_back(range(op.bindings[i].buffer, op.bindings[i].offset, op.bindings[i].range,
                          (op.pipeline->writes >> i) & 1u));
  }
}

namespace {

// The access types of compute and transfer stages: writes (source) or reads and writes (destination).
VkAccessFlags stage_access(VkPipelineStageFlags stages, bool source) {
  VkAccessFlags a = 0;
  if (stages & VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT)
    a |= VK_ACCESS_SHADER_WRITE_BIT | (source ? 0 : VK_ACCESS_SHADER_READ_BIT);
  if (stages & VK_PIPELINE_STAGE_TRANSFER_BIT)
    a |= VK_ACCESS_TRANSFER_WRITE_BIT | (source ? 0 : VK_ACCESS_TRANSFER_READ_BIT);
  return a;
}

}  // namespace

bool Stream::needs_barrier(const Op& op) {
  accesses(op, op_access_);
  bool conflict = false;
  for (const Access& a : op_access_)
    for (const Access& b : since_barrier_)
      if ((a.write || b.write) && a.buffer == b.buffer && a.lo < b.hi && b.lo < a.hi) conflict = true;
  if (conflict) since_barrier_.clear();
  since_barrier_.insert(since_barrier_.end(), op_access_.begin(), op_access_.end());
  return conflict;
}

void Stream::record(const Op& op) {
  record_op(op);
  if (profiler_) profiler_->after_op(slots_[rec_].cmd, rec_, recorded_);
  ++recorded_;
}

void Stream::record_op(const Op& op) {
  VkCommandBuffer cmd = slots_[rec_].cmd;
  // Barriers name only the stages involved: the ops since the last barrier (source) and this
  // op's (destination). A barrier orders this op's stage after everything before it, so an op
  // of the other stage (a copy after compute-only barriers) gets a barrier of its own even
  // without a conflict; in a decode step, all dispatches, that never happens.
  const VkPipelineStageFlags stage =
      op.kind == Kind::dispatch ? VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT : VK_PIPELINE_STAGE_TRANSFER_BIT;
  const bool unordered = !(ordered_stages_ & stage);
  if (first_op_) {  // the submission itself orders the first op after earlier work and host writes
    since_barrier_.clear();
    needs_barrier(op);
    ordered_stages_ = VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT;
    pending_stages_ = 0;
  } else if (needs_barrier(op) || unordered) {
    if (unordered) since_barrier_ = op_access_;  // needs_barrier may have found no conflict and kept the list
    ++barriers;
    VkMemoryBarrier mb{VK_STRUCTURE_TYPE_MEMORY_BARRIER};
    mb.srcAccessMask = stage_access(pending_stages_, true);
    mb.dstAccessMask = stage_access(stage, false);
    vkCmdPipelineBarrier(cmd, pending_stages_, stage, 0, 1, &mb, 0, nullptr, 0, nullptr);
    ordered_stages_ = stage;
    pending_stages_ = 0;
  }
  pending_stages_ |= stage;
  first_op_ = false;
  if (op.kind == Kind::copy) {
    VkBufferCopy c{op.src_off, op.dst_off, op.bytes};
    vkCmdCopyBuffer(cmd, op.src, op.dst, 1, &c);
    return;
  }
  if (op.kind == Kind::zero) {
    vkCmdFillBuffer(cmd, op.dst, op.dst_off, op.bytes, 0);  // offset and size are multiples of 4
    return;
  }
  VkDescriptorSetAllocateInfo ai{VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO};
  ai.descriptorPool = slots_[rec_].pool;
  ai.descriptorSetCount = 1;
  ai.pSetLayouts = &op.pipeline->set_layout;
  VkDescriptorSet set = VK_NULL_HANDLE;
  VK_CHECK(vkAllocateDescriptorSets(ctx_.device, &ai, &set));
  VkDescriptorBufferInfo infos[kMaxBindings];
  VkWriteDescriptorSet writes[kMaxBindings];
  for (uint32_t i = 0; i < op.n_bindings; ++i) {
    infos[i] = {op.bindings[i].buffer, op.bindings[i].offset, op.bindings[i].range};
    writes[i] = {VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET};
    writes[i].dstSet = set;
    writes[i].dstBinding = i;
    writes[i].descriptorCount = 1;
    writes[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
    writes[i].pBufferInfo = &infos[i];
  }
  vkUpdateDescriptorSets(ctx_.device, op.n_bindings, writes, 0, nullptr);
  vkCmdBindPipeline(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, op.pipeline->pipeline);
  vkCmdBindDescriptorSets(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, op.pipeline->layout, 0, 1, &set, 0, nullptr);
  if (op.push_bytes)
    vkCmdPushConstants(cmd, op.pipeline->layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, op.push_bytes, op.push.data());
  vkCmdDispatch(cmd, op.grid[0], op.grid[1], op.grid[2]);
}

uint64_t Stream::write_count(VkBuffer buffer) const {
  const auto it = write_counts_.find(buffer);
  return it == write_counts_.end() ? 0 : it->second;
}

void Stream::add(const Op& op) {
  if (op.kind == Kind::dispatch) {
    for (uint32_t i = 0; i < op.n_bindings; ++i)
      if ((op.pipeline->writes >> i) & 1u) ++write_counts_[op.bindings[i].buffer];
  } else {
    ++write_counts_[op.dst];
  }
  const size_t k = ops_.size();
  ops_.push_back(op);
  ++ops;
  if (recording_) return record(op);
  if (replay_enabled_ && k < last_ops_.size() && last_ops_[k] == op && ctx_.buffers_destroyed == last_destroyed_)
    return;  // still following the last submission: nothing to record
  start_recording();  // records ops_, this op included
}

void Stream::reserve(size_t ring_bytes, uint32_t sets, const char* op) {
  const size_t need = ring_bytes + 256 * 4;  // alignment slack of a few stage() calls
  if (need > kRingBytes || sets > kMaxSets)
    fail(op, "one call needs ", ring_bytes, " bytes of staged arguments and ", sets,
         " dispatches; the backend stages at most ", kRingBytes, " bytes and ", kMaxSets);
  if (ring_used_ + need > kRingBytes || ops_.size() + sets > kMaxSets) flush();
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
  if (bindings.size() != p.n_bindings || bindings.size() > kMaxBindings)
    fail("dispatch", "pipeline takes ", p.n_bindings, " buffers, got ", bindings.size());
  if (push_bytes > 128 || push_bytes % 4) fail("dispatch", "push constants of ", push_bytes, " bytes");
  if (gx == 0 || gy == 0 || gz == 0) return;
  const auto& lim = ctx_.props.limits.maxComputeWorkGroupCount;
  if (gx > lim[0] || gy > lim[1] || gz > lim[2])
    fail("dispatch", "grid ", gx, " x ", gy, " x ", gz, " exceeds the device's ", lim[0], " x ", lim[1], " x ", lim[2]);
  if (ops_.size() >= kMaxSets) fail("dispatch", "descriptor pool exhausted (reserve() was not called)");
  Op op;
  op.kind = Kind::dispatch;
  op.pipeline = &p;
  op.n_bindings = uint32_t(bindings.size());
  uint32_t i = 0;
  for (const BufRef& b : bindings) op.bindings[i++] = b;
  op.push_bytes = uint32_t(push_bytes);
  if (push_bytes) std::memcpy(op.push.data(), push, push_bytes);
  op.grid[0] = gx;
  op.grid[1] = gy;
  op.grid[2] = gz;
  add(op);
}

void Stream::copy(VkBuffer src, VkDeviceSize src_off, VkBuffer dst, VkDeviceSize dst_off, VkDeviceSize bytes) {
  if (!bytes) return;
  Op op;
  op.kind = Kind::copy;
  op.src = src;
  op.dst = dst;
  op.src_off = src_off;
  op.dst_off = dst_off;
  op.bytes = bytes;
  add(op);
}

void Stream::zero(VkBuffer dst, VkDeviceSize off, VkDeviceSize bytes) {
  if (!bytes) return;
  Op op;
  op.kind = Kind::zero;
  op.dst = dst;
  op.dst_off = off;
  op.bytes = bytes;
  add(op);
}

void Stream::flush() {
  if (ops_.empty()) return;
  const bool replay = !recording_ && replay_enabled_ && ops_.size() == last_ops_.size() &&
                      ctx_.buffers_destroyed == last_destroyed_;
  if (!replay && !recording_) start_recording();  // a prefix of the last submission: record it now
  VkCommandBuffer cmd = replay ? slots_[1 - rec_].cmd : slots_[rec_].cmd;
  if (!replay) {
    // Make device writes visible to the host (reads of mapped staging memory after the wait).
    VkMemoryBarrier mb{VK_STRUCTURE_TYPE_MEMORY_BARRIER};
    mb.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
    mb.dstAccessMask = VK_ACCESS_HOST_READ_BIT;
    vkCmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                         VK_PIPELINE_STAGE_HOST_BIT, 0, 1, &mb, 0, nullptr, 0, nullptr);
    VK_CHECK(vkEndCommandBuffer(cmd));
  }
  // Whatever happens below, this submission's ops are done with: the next one starts afresh.
  recording_ = false;
  ring_used_ = 0;
  std::vector<Op> done = std::move(ops_);
  ops_.clear();
  VkSubmitInfo si{VK_STRUCTURE_TYPE_SUBMIT_INFO};
  si.commandBufferCount = 1;
  si.pCommandBuffers = &cmd;
  const VkResult sr = vkQueueSubmit(ctx_.queue, 1, &si, fence_);
  if (sr != VK_SUCCESS) {
    last_ops_.clear();
    VK_CHECK(sr);
  }
  ++submits;
  const VkResult r = vkWaitForFences(ctx_.device, 1, &fence_, VK_TRUE, UINT64_MAX);
  vkResetFences(ctx_.device, 1, &fence_);
  if (profiler_ && r == VK_SUCCESS) {
    std::vector<std::string> names;
    for (const Op& op : done)
      names.push_back(op.kind == Kind::copy ? "(copy)" : op.kind == Kind::zero ? "(fill)" : op.pipeline->name);
    profiler_->collect(replay ? 1 - rec_ : rec_, names, replay);
  }
  if (replay) {
    ++replays;
  } else {  // the recorded slot becomes the one to replay; the other is recorded next
    last_ops_ = std::move(done);
    last_destroyed_ = ctx_.buffers_destroyed;
    rec_ = 1 - rec_;
  }
  if (r != VK_SUCCESS) last_ops_.clear();
  VK_CHECK(r);
}

}  // namespace sbits::kernels::vk
