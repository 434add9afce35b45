// Recording ops into a command buffer, submitting it, and replaying it when a step repeats.
//
// Every op becomes one dispatch (or copy). Ops must appear to run in order, as the interface
// promises, but a barrier (a global memory barrier naming the stages involved) is recorded only
// before an op that conflicts with one recorded since the last barrier: it reads a range one of
// them wrote (read after write), or writes a range one of them read or wrote. So the q, k and
// v matmuls of a layer, which read the same x and write three buffers, run without barriers
// between them. Which bindings an op writes comes from its pipeline (shader_writes); copies
// read their source and write their destination. The decision depends only on the ops, so a
// replayed command buffer carries the right barriers for the same ops.
// Host arguments go into a host-visible ring that is reset at each submission, so a repeated
// sequence of ops stages its arguments at the same ring offsets.
//
// Replay: the ops of a submission are kept as records (pipeline, buffers, push constants,
// grid). While the ops of the next submission equal the previous one's, one by one, nothing is
// recorded: only their arguments are staged. If the whole sequence matches, the previous
// command buffer is submitted again (a decode step: same ops on the same buffers, only the
// staged token ids and positions differ). At the first difference the records seen so far are
// recorded into the other command buffer and recording goes on from there. Two command
// buffers, each with its own descriptor pool, alternate. Replay is off when a buffer was
// destroyed since (its handle could be reused) and with SBITS_VULKAN_REPLAY=0.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <unordered_map>
#include <vector>

#include "kernels/vulkan/vk_device.h"
#include "kernels/vulkan/vk_profile.h"

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
  // Submits what was recorded (or replays) and waits; nothing happens when there are no ops.
  void flush();
  // How many ops so far wrote (part of) `buffer`: a value derived from a buffer's contents is
  // current while this count is what it was when the value was made (the Vulkan backend's
  // integer form of x). forget() drops a destroyed buffer's count.
  uint64_t write_count(VkBuffer buffer) const;
  void forget(VkBuffer buffer) { write_counts_.erase(buffer); }

  uint64_t ops = 0, submits = 0, replays = 0, barriers = 0;  // barriers: recorded, replays not counted

 private:
  static constexpr size_t kRingBytes = size_t(32) << 20;
  static constexpr uint32_t kMaxSets = 1024;
  static constexpr uint32_t kMaxBindings = 8;

  enum class Kind : uint32_t { dispatch, copy, zero };
  struct Op {
    Kind kind = Kind::dispatch;
    const Pipeline* pipeline = nullptr;
    uint32_t n_bindings = 0, push_bytes = 0;
    std::array<BufRef, kMaxBindings> bindings{};
    std::array<uint32_t, 32> push{};
    uint32_t grid[3] = {0, 0, 0};
    VkBuffer src = VK_NULL_HANDLE, dst = VK_NULL_HANDLE;
    VkDeviceSize src_off = 0, dst_off = 0, bytes = 0;
    bool operator==(const Op& o) const;
  };
  struct Slot {  // a command buffer with the descriptor sets it uses
    VkCommandBuffer cmd = VK_NULL_HANDLE;
    VkDescriptorPool pool = VK_NULL_HANDLE;
  };

  // A byte range of a buffer an op touches; hi is exclusive (VK_WHOLE_SIZE: to the end).
  struct Access {
    VkBuffer buffer = VK_NULL_HANDLE;
    VkDeviceSize lo = 0, hi = 0;
    bool write = false;
  };
  static void accesses(const Op& op, std::vector<Access>& out);
  // True when `op` conflicts with the accesses since the last barrier; then they are replaced
  // by op's own, else op's are added.
  bool needs_barrier(const Op& op);

  void add(const Op& op);
  void start_recording();     // into slots_[rec_], re-recording ops_ so far
  void record(const Op& op);  // into the recording command buffer (+ the profiler's stamp)
  void record_op(const Op& op);
  void reset_slot(Slot& s);

  Context& ctx_;
  VkCommandPool cmd_pool_ = VK_NULL_HANDLE;
  VkFence fence_ = VK_NULL_HANDLE;
  Slot slots_[2];
  int rec_ = 0;               // the slot being recorded (the other holds the last submission)
  bool recording_ = false;    // slots_[rec_] has begun
  bool first_op_ = true;      // no barrier before the first op of a submission
  // Stages (compute, transfer) of the ops since the last barrier, and the stage that barrier
  // ordered after everything before it.
  VkPipelineStageFlags pending_stages_ = 0, ordered_stages_ = 0;
  std::vector<Access> since_barrier_, op_access_;  // accesses since the last barrier; scratch
  std::vector<Op> ops_;       // this submission's ops
  std::vector<Op> last_ops_;  // the ops of slots_[1 - rec_], when it may be replayed
  uint64_t last_destroyed_ = 0;
  std::unordered_map<VkBuffer, uint64_t> write_counts_;
  bool replay_enabled_ = true;
  DeviceBuffer ring_;
  size_t ring_used_ = 0;
  std::unique_ptr<Profiler> profiler_;  // SBITS_VULKAN_PROFILE
  uint32_t recorded_ = 0;               // ops recorded into slots_[rec_] (the profiler's index)
};

}  // namespace sbits::kernels::vk
