// The Vulkan device layer: instance and device (discrete GPUs first), device memory, compute
// pipelines created once and cached by name. Everything the ops need below the op level, and
// nothing about ops.
#pragma once

#include <vulkan/vulkan.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "kernels/vulkan/vk_check.h"
#include "kernels/vulkan/vulkan_backend.h"

namespace sbits::kernels::vk {

class Context;

// Device-local memory in large blocks handed out in aligned ranges (first fit, freed ranges
// coalesced), so that a model's few hundred tensors and buffers take a handful of
// vkAllocateMemory calls (drivers limit and slow down many small allocations). Blocks stay
// until the device goes. Thread-safe: buffers may be released from any thread.
class MemoryPool {
 public:
  static constexpr VkDeviceSize kBlockBytes = VkDeviceSize(256) << 20;
  static constexpr VkDeviceSize kMaxPooled = VkDeviceSize(64) << 20;  // larger: own allocation
  struct Range {
    VkDeviceMemory memory = VK_NULL_HANDLE;
    VkDeviceSize offset = 0, size = 0;
    int block = -1;
  };
  explicit MemoryPool(Context& ctx) : ctx_(ctx) {}
  ~MemoryPool();
  // Throws KernelError (naming `op`) when the device is out of memory.
  Range allocate(uint32_t type, VkDeviceSize size, VkDeviceSize align, const char* op);
  void release(const Range& r);

 private:
  struct Block {
    VkDeviceMemory memory = VK_NULL_HANDLE;
    uint32_t type = 0;
    std::map<VkDeviceSize, VkDeviceSize> free;  // offset -> length
  };
  bool carve(Block& b, VkDeviceSize size, VkDeviceSize align, VkDeviceSize* offset);
  Context& ctx_;
  std::mutex mutex_;
  std::vector<Block> blocks_;
};

// One Vulkan device opened for compute: one queue, the properties the ops size themselves by.
class Context {
 public:
  explicit Context(int device_index);
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  VkInstance instance = VK_NULL_HANDLE;
  VkPhysicalDevice phys = VK_NULL_HANDLE;
  VkDevice device = VK_NULL_HANDLE;
  VkQueue queue = VK_NULL_HANDLE;
  uint32_t queue_family = 0;
  VkPhysicalDeviceProperties props{};
  VkPhysicalDeviceMemoryProperties mem_props{};
  VulkanDeviceInfo info;
  uint32_t subgroup_size = 0;
  bool subgroup_arith = false;  // subgroupAdd/Max in compute shaders
  // shaderIntegerDotProduct enabled (VK_KHR_shader_integer_dot_product):
  // matvec_dot.comp. SBITS_VULKAN_INTEGER_DOT=0 leaves it off.
  bool integer_dot = false;
  // VK_NV_cooperative_matrix and shaderFloat16 enabled: the prefill GEMM on tiled weights runs on
  // matrix units (matmul_coopmat.comp). SBITS_VULKAN_COOPMAT=0 leaves it off.
  bool coopmat = false;
  bool validation = false;
  // SBITS_VULKAN_PIPELINE_STATS (tuning): 1 prints the driver's statistics of every pipeline
  // created (registers, instructions, spills: whatever the driver reports), 2 also writes its
  // text representations (e.g. the ISA) to files; needs VK_KHR_pipeline_executable_properties.
  int pipeline_stats = 0;
  std::atomic<uint64_t> validation_errors{0};
  std::atomic<uint64_t> live_bytes{0};
  // Incremented whenever a buffer is destroyed: a recorded command buffer that might name a
  // destroyed buffer (whose handle the driver may hand out again) must not be replayed.
  std::atomic<uint64_t> buffers_destroyed{0};

  // A memory type with all of `want` among `type_bits`, or -1.
  int find_memory(uint32_t type_bits, VkMemoryPropertyFlags want) const;

  std::unique_ptr<MemoryPool> pool;  // device-local buffers

 private:
  void destroy();
  VkDebugUtilsMessengerEXT messenger_ = VK_NULL_HANDLE;
};

// A VkBuffer with its own memory. Device-local buffers are filled through staging copies;
// host-visible ones (staging, the argument ring) stay mapped.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(Context& ctx, size_t bytes, bool host_visible, const char* op);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& o) noexcept { *this = std::move(o); }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;

  VkBuffer buffer = VK_NULL_HANDLE;
  size_t bytes = 0;    // requested size (the allocation may be larger)
  void* mapped = nullptr;

 private:
  void release();
  Context* ctx_ = nullptr;
  VkDeviceMemory memory_ = VK_NULL_HANDLE;  // own memory (host-visible or large buffers)
  MemoryPool::Range range_;                 // or a range of the pool
  size_t alloc_bytes_ = 0;
};

// A compute pipeline with its descriptor-set layout (n storage buffers at bindings 0..n-1) and
// push constants (up to 128 bytes).
struct Pipeline {
  std::string name;  // the cache's key: family and specialization constants
  VkDescriptorSetLayout set_layout = VK_NULL_HANDLE;
  VkPipelineLayout layout = VK_NULL_HANDLE;
  VkPipeline pipeline = VK_NULL_HANDLE;
  uint32_t n_bindings = 0;
  uint32_t writes = 0;  // bit i: the shader writes binding i (the others it only reads)
};

// SPIR-V of one shader family, embedded at build time (vk_shaders.cpp).
struct ShaderCode {
  const uint32_t* words = nullptr;
  size_t n_words = 0;
};
ShaderCode shader_code(const std::string& family, bool subgroups);
// The bindings a shader family writes with these specialization constants (bit i = binding
// i), for the stream's hazard tracking: everything else it binds is only read.
uint32_t shader_writes(const std::string& family, const std::vector<uint32_t>& spec);

// Prints the driver's statistics of a pipeline created with the capture flags (and with
// ctx.pipeline_stats == 2 writes its text representations to <name>.<representation>.txt).
void report_pipeline_statistics(const Context& ctx, VkPipeline pipeline, const std::string& name);

// Pipelines by name ("matvec_tiled", "rows_f16", ...): created on first use from a shader
// family and specialization constants (constant_id i = spec[i]), then reused.
class PipelineCache {
 public:
  explicit PipelineCache(Context& ctx) : ctx_(ctx) {}
  ~PipelineCache();
  const Pipeline& get(const std::string& name, const std::string& family, uint32_t n_bindings,
                      const std::vector<uint32_t>& spec);

 private:
  Context& ctx_;
  std::map<std::string, Pipeline> pipelines_;
  std::map<std::string, VkShaderModule> modules_;
};

}  // namespace sbits::kernels::vk
