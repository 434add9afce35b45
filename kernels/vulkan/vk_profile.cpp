// GPU time per op from timestamps; see vk_profile.h.
#include "kernels/vulkan/vk_profile.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace sbits::kernels::vk {

std::unique_ptr<Profiler> Profiler::create(Context& ctx, uint32_t max_ops) {
  const char* e = std::getenv("SBITS_VULKAN_PROFILE");
  if (!e || !*e || std::string_view(e) == "0") return nullptr;
  uint32_t nq = 0;
  vkGetPhysicalDeviceQueueFamilyProperties(ctx.phys, &nq, nullptr);
  std::vector<VkQueueFamilyProperties> qf(nq);
  vkGetPhysicalDeviceQueueFamilyProperties(ctx.phys, &nq, qf.data());
  if (ctx.queue_family >= nq || qf[ctx.queue_family].timestampValidBits == 0) {
    std::fprintf(stderr, "sbits vulkan: SBITS_VULKAN_PROFILE: the compute queue of %s writes no timestamps\n",
                 ctx.info.name.c_str());
    return nullptr;
  }
  return std::make_unique<Profiler>(ctx, max_ops);
}

Profiler::Profiler(Context& ctx, uint32_t max_ops)
    : ctx_(ctx), max_ops_(max_ops), ns_per_tick_(double(ctx.props.limits.timestampPeriod)) {
  VkQueryPoolCreateInfo qi{VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO};
  qi.queryType = VK_QUERY_TYPE_TIMESTAMP;
  qi.queryCount = max_ops + 1;
  for (VkQueryPool& p : pools_) VK_CHECK(vkCreateQueryPool(ctx.device, &qi, nullptr, &p));
}

Profiler::~Profiler() {
  print();
  for (VkQueryPool p : pools_) vkDestroyQueryPool(ctx_.device, p, nullptr);
}

void Profiler::begin(VkCommandBuffer cmd, int slot) {
  vkCmdResetQueryPool(cmd, pools_[slot], 0, max_ops_ + 1);
  vkCmdWriteTimestamp(cmd, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, pools_[slot], 0);
}

void Profiler::after_op(VkCommandBuffer cmd, int slot, uint32_t index) {
  if (index < max_ops_) vkCmdWriteTimestamp(cmd, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, pools_[slot], index + 1);
}

void Profiler::collect(int slot, const std::vector<std::string>& names, bool replayed) {
  const uint32_t n = uint32_t(std::min<size_t>(names.size(), max_ops_)) + 1;
  std::vector<uint64_t> t(n);
  if (vkGetQueryPoolResults(ctx_.device, pools_[slot], 0, n, n * sizeof(uint64_t), t.data(), sizeof(uint64_t),
                            VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT) != VK_SUCCESS)
    return;
  ++submissions_[replayed];
  for (uint32_t i = 1; i < n; ++i) {
    Total& tot = totals_[replayed][names[i - 1]];
    ++tot.calls;
    tot.ns += double(t[i] - t[i - 1]) * ns_per_tick_;
  }
}

void Profiler::print() const {
  for (int replayed = 1; replayed >= 0; --replayed) {
    if (submissions_[replayed] == 0) continue;
    std::vector<std::pair<std::string, Total>> rows(totals_[replayed].begin(), totals_[replayed].end());
    std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.ns > b.second.ns; });
    double all = 0;
    for (const auto& r : rows) all += r.second.ns;
    const double subs = double(submissions_[replayed]);
    std::fprintf(stderr,
                 "sbits vulkan profile, %s submissions: %llu, %.1f us each (ops serialized by the timestamps)\n",
                 replayed ? "replayed" : "recorded", static_cast<unsigned long long>(submissions_[replayed]),
                 all / subs / 1e3);
    std::fprintf(stderr, "  %-28s %10s %12s %10s %7s\n", "pipeline", "calls/sub", "us/sub", "us/call", "share");
    for (const auto& [name, t] : rows)
      std::fprintf(stderr, "  %-28s %10.1f %12.1f %10.2f %6.1f%%\n", name.c_str(), double(t.calls) / subs,
                   t.ns / subs / 1e3, t.ns / double(t.calls) / 1e3, 100.0 * t.ns / all);
  }
}

}  // namespace sbits::kernels::vk
