// SBITS_VULKAN_PROFILE=1: GPU time per op, from timestamps written after every op of a
// submission, summed by pipeline name and printed when the stream goes (to stderr).
//
// A timestamp at the bottom of the pipe after op k is written once everything before it has
// finished, so op k is charged from the end of op k - 1 to its own end: its run time plus the
// barrier and launch gap before it. Ops that would overlap (a layer's q, k and v matvecs) are
// serialized by the timestamps, so the profile measures each op alone; the step's total is
// that of the profiled run, not of an unprofiled one. Replayed submissions (decode steps) and
// recorded ones (prefill, first steps) are summed apart.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "kernels/vulkan/vk_device.h"

namespace sbits::kernels::vk {

class Profiler {
 public:
  // Null when profiling is off or the queue cannot write timestamps.
  static std::unique_ptr<Profiler> create(Context& ctx, uint32_t max_ops);
  Profiler(Context& ctx, uint32_t max_ops);
  ~Profiler();
  Profiler(const Profiler&) = delete;
  Profiler& operator=(const Profiler&) = delete;

  // Recording into command buffer `slot` (0 or 1): reset its queries and stamp the start; then a
  // stamp after each op (index 0, 1, ... in recording order).
  void begin(VkCommandBuffer cmd, int slot);
  void after_op(VkCommandBuffer cmd, int slot, uint32_t index);
  // After the submission of `slot` completed: charge its ops (names in recording order).
  void collect(int slot, const std::vector<std::string>& names, bool replayed);
  void print() const;

 private:
  struct Total {
    uint64_t calls = 0;
    double ns = 0;
  };
  Context& ctx_;
  uint32_t max_ops_;
  double ns_per_tick_;
  VkQueryPool pools_[2] = {VK_NULL_HANDLE, VK_NULL_HANDLE};
  std::map<std::string, Total> totals_[2];  // [replayed]
  uint64_t submissions_[2] = {0, 0};
};

}  // namespace sbits::kernels::vk
