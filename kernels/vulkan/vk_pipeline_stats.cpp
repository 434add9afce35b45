// SBITS_VULKAN_PIPELINE_STATS: the driver's own account of each compiled pipeline
// (VK_KHR_pipeline_executable_properties), for tuning kernels without a vendor profiler.
// NVIDIA's driver, for one, reports register counts and instruction counts per executable.
#include <cctype>
#include <cinttypes>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "kernels/vulkan/vk_device.h"

namespace sbits::kernels::vk {
namespace {

std::string statistic_text(const VkPipelineExecutableStatisticKHR& s) {
  char buf[64];
  switch (s.format) {
    case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_BOOL32_KHR: return s.value.b32 ? "true" : "false";
    case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_INT64_KHR:
      std::snprintf(buf, sizeof buf, "%" PRId64, s.value.i64);
      break;
    case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_UINT64_KHR:
      std::snprintf(buf, sizeof buf, "%" PRIu64, s.value.u64);
      break;
    case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_FLOAT64_KHR: std::snprintf(buf, sizeof buf, "%g", s.value.f64); break;
    default: return "?";
  }
  return buf;
}

// A file name from a pipeline or representation name: letters, digits, '-', '_' and '.'.
std::string file_safe(std::string s) {
  for (char& c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') c = '_';
  return s;
}

void write_representations(VkDevice dev, const VkPipelineExecutableInfoKHR& ei, const std::string& stem) {
  auto get = reinterpret_cast<PFN_vkGetPipelineExecutableInternalRepresentationsKHR>(
      vkGetDeviceProcAddr(dev, "vkGetPipelineExecutableInternalRepresentationsKHR"));
  if (!get) return;
  uint32_t n = 0;
  if (get(dev, &ei, &n, nullptr) != VK_SUCCESS || n == 0) return;
  std::vector<VkPipelineExecutableInternalRepresentationKHR> reps(
      n, {VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_INTERNAL_REPRESENTATION_KHR});
  if (get(dev, &ei, &n, reps.data()) != VK_SUCCESS) return;
  std::vector<std::vector<char>> data(n);
  for (uint32_t i = 0; i < n; ++i) {
    data[i].resize(reps[i].dataSize);
    reps[i].pData = data[i].data();
  }
  if (get(dev, &ei, &n, reps.data()) != VK_SUCCESS) return;
  for (uint32_t i = 0; i < n; ++i) {
    const std::string path = file_safe(stem + "." + reps[i].name) + (reps[i].isText ? ".txt" : ".bin");
    std::ofstream(path, std::ios::binary).write(data[i].data(), std::streamsize(data[i].size()));
    std::fprintf(stderr, "sbits vulkan: pipeline %s: %s (%zu bytes) -> %s\n", stem.c_str(), reps[i].name,
                 data[i].size(), path.c_str());
  }
}

}  // namespace

void report_pipeline_statistics(const Context& ctx, VkPipeline pipeline, const std::string& name) {
  auto props_fn = reinterpret_cast<PFN_vkGetPipelineExecutablePropertiesKHR>(
      vkGetDeviceProcAddr(ctx.device, "vkGetPipelineExecutablePropertiesKHR"));
  auto stats_fn = reinterpret_cast<PFN_vkGetPipelineExecutableStatisticsKHR>(
      vkGetDeviceProcAddr(ctx.device, "vkGetPipelineExecutableStatisticsKHR"));
  if (!props_fn || !stats_fn) return;
  VkPipelineInfoKHR pi{VK_STRUCTURE_TYPE_PIPELINE_INFO_KHR};
  pi.pipeline = pipeline;
  uint32_t n = 0;
  if (props_fn(ctx.device, &pi, &n, nullptr) != VK_SUCCESS) return;
  std::vector<VkPipelineExecutablePropertiesKHR> execs(n, {VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_PROPERTIES_KHR});
  if (props_fn(ctx.device, &pi, &n, execs.data()) != VK_SUCCESS) return;
  for (uint32_t e = 0; e < n; ++e) {
    VkPipelineExecutableInfoKHR ei{VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_INFO_KHR};
    ei.pipeline = pipeline;
    ei.executableIndex = e;
    uint32_t ns = 0;
    if (stats_fn(ctx.device, &ei, &ns, nullptr) != VK_SUCCESS) continue;
    std::vector<VkPipelineExecutableStatisticKHR> stats(ns, {VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_STATISTIC_KHR});
    if (stats_fn(ctx.device, &ei, &ns, stats.data()) != VK_SUCCESS) continue;
    std::string line = "sbits vulkan: pipeline " + name + " [" + execs[e].name + ", subgroup " +
                       std::to_string(execs[e].subgroupSize) + "]:";
    for (const auto& s : stats) line += std::string(" ") + s.name + " = " + statistic_text(s) + ";";
    std::fprintf(stderr, "%s\n", line.c_str());
    if (ctx.pipeline_stats == 2) write_representations(ctx.device, ei, name);
  }
}

}  // namespace sbits::kernels::vk
