// Vulkan instance, device choice, memory and the pipeline cache.
#include "kernels/vulkan/vk_device.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>

namespace sbits::kernels::vk {

const char* vk_result_name(VkResult r) {
  switch (r) {
    case VK_SUCCESS: return "VK_SUCCESS";
    case VK_NOT_READY: return "VK_NOT_READY";
    case VK_TIMEOUT: return "VK_TIMEOUT";
    case VK_ERROR_OUT_OF_HOST_MEMORY: return "VK_ERROR_OUT_OF_HOST_MEMORY";
    case VK_ERROR_OUT_OF_DEVICE_MEMORY: return "VK_ERROR_OUT_OF_DEVICE_MEMORY";
    case VK_ERROR_INITIALIZATION_FAILED: return "VK_ERROR_INITIALIZATION_FAILED";
    case VK_ERROR_DEVICE_LOST: return "VK_ERROR_DEVICE_LOST";
    case VK_ERROR_MEMORY_MAP_FAILED: return "VK_ERROR_MEMORY_MAP_FAILED";
    case VK_ERROR_LAYER_NOT_PRESENT: return "VK_ERROR_LAYER_NOT_PRESENT";
    case VK_ERROR_EXTENSION_NOT_PRESENT: return "VK_ERROR_EXTENSION_NOT_PRESENT";
    case VK_ERROR_FEATURE_NOT_PRESENT: return "VK_ERROR_FEATURE_NOT_PRESENT";
    case VK_ERROR_INCOMPATIBLE_DRIVER: return "VK_ERROR_INCOMPATIBLE_DRIVER";
    case VK_ERROR_TOO_MANY_OBJECTS: return "VK_ERROR_TOO_MANY_OBJECTS";
    case VK_ERROR_OUT_OF_POOL_MEMORY: return "VK_ERROR_OUT_OF_POOL_MEMORY";
    default: return "VkResult";
  }
}

void vk_failed(VkResult r, const char* call, const char* file, int line) {
  std::ostringstream s;
  s << "vulkan: " << call << " failed with " << vk_result_name(r) << " (" << int(r) << ") at " << file << ":" << line;
  throw KernelError(s.str());
}

namespace {

int type_rank(VkPhysicalDeviceType t) {
  switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return 0;
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return 1;
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return 2;
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return 3;
    default: return 4;
  }
}

const char* type_name(VkPhysicalDeviceType t) {
  static const char* names[] = {"discrete", "integrated", "virtual", "cpu", "other"};
  return names[type_rank(t)];
}

bool env_flag(const char* name, bool fallback) {
  const char* e = std::getenv(name);
  if (!e || !*e) return fallback;
  return std::string_view(e) != "0";
}

bool device_extension_available(VkPhysicalDevice phys, const char* name) {
  uint32_t n = 0;
  if (vkEnumerateDeviceExtensionProperties(phys, nullptr, &n, nullptr) != VK_SUCCESS) return false;
  std::vector<VkExtensionProperties> e(n);
  if (vkEnumerateDeviceExtensionProperties(phys, nullptr, &n, e.data()) != VK_SUCCESS) return false;
  return std::any_of(e.begin(), e.end(),
                     [&](const VkExtensionProperties& x) { return std::strcmp(x.extensionName, name) == 0; });
}

// shaderIntegerDotProduct through VK_KHR_shader_integer_dot_product: the instance asks for
// Vulkan 1.2, so the feature comes from the extension even where the device has 1.3 (which
// keeps advertising it).
bool integer_dot_supported(VkPhysicalDevice phys) {
  if (!device_extension_available(phys, VK_KHR_SHADER_INTEGER_DOT_PRODUCT_EXTENSION_NAME)) return false;
  VkPhysicalDeviceShaderIntegerDotProductFeaturesKHR dot{
      VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_INTEGER_DOT_PRODUCT_FEATURES_KHR};
  VkPhysicalDeviceFeatures2 f2{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2};
  f2.pNext = &dot;
  vkGetPhysicalDeviceFeatures2(phys, &f2);
  return dot.shaderIntegerDotProduct == VK_TRUE;
}

// The prefill GEMM on cooperative matrices (matmul_coopmat.comp) needs VK_NV_cooperative_matrix
// with 16 x 16 x 16 f16 x f16 -> f32 subgroup products, shaderFloat16 (its shared-memory tiles are
// f16) and 32-invocation subgroups (the shader's layout). NVIDIA's driver has it; llvmpipe does not.
bool coopmat_supported(VkInstance instance, VkPhysicalDevice phys, uint32_t subgroup_size) {
  if (subgroup_size != 32 || !device_extension_available(phys, VK_NV_COOPERATIVE_MATRIX_EXTENSION_NAME)) return false;
  VkPhysicalDeviceCooperativeMatrixFeaturesNV cm{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_NV};
  VkPhysicalDeviceShaderFloat16Int8Features f16{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES};
  f16.pNext = &cm;
  VkPhysicalDeviceFeatures2 f2{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2};
  f2.pNext = &f16;
  vkGetPhysicalDeviceFeatures2(phys, &f2);
  if (!cm.cooperativeMatrix || !f16.shaderFloat16) return false;
  auto props_fn = reinterpret_cast<PFN_vkGetPhysicalDeviceCooperativeMatrixPropertiesNV>(
      vkGetInstanceProcAddr(instance, "vkGetPhysicalDeviceCooperativeMatrixPropertiesNV"));
  uint32_t n = 0;
  if (!props_fn || props_fn(phys, &n, nullptr) != VK_SUCCESS) return false;
  std::vector<VkCooperativeMatrixPropertiesNV> props(n, {VK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_PROPERTIES_NV});
  if (props_fn(phys, &n, props.data()) != VK_SUCCESS) return false;
  return std::any_of(props.begin(), props.end(), [](const VkCooperativeMatrixPropertiesNV& c) {
    return c.MSize == 16 && c.NSize == 16 && c.KSize == 16 && c.AType == VK_COMPONENT_TYPE_FLOAT16_NV &&
           c.BType == VK_COMPONENT_TYPE_FLOAT16_NV && c.CType == VK_COMPONENT_TYPE_FLOAT32_NV &&
           c.DType == VK_COMPONENT_TYPE_FLOAT32_NV && c.scope == VK_SCOPE_SUBGROUP_NV;
  });
}

bool layer_available(const char* name) {
  uint32_t n = 0;
  if (vkEnumerateInstanceLayerProperties(&n, nullptr) != VK_SUCCESS) return false;
  std::vector<VkLayerProperties> layers(n);
  if (vkEnumerateInstanceLayerProperties(&n, layers.data()) != VK_SUCCESS) return false;
  for (const auto& l : layers)
    if (std::strcmp(l.layerName, name) == 0) return true;
  return false;
}

constexpr const char* kValidationLayer = "VK_LAYER_KHRONOS_validation";

VKAPI_ATTR VkBool32 VKAPI_CALL on_debug_message(VkDebugUtilsMessageSeverityFlagBitsEXT severity,
                                                 VkDebugUtilsMessageTypeFlagsEXT,
                                                 const VkDebugUtilsMessengerCallbackDataEXT* data, void* user) {
  if (severity & VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT) {
    static_cast<Context*>(user)->validation_errors++;
    std::fprintf(stderr, "sbits vulkan validation: %s\n", data && data->pMessage ? data->pMessage : "(no message)");
  }
  return VK_FALSE;
}

// With validation, synchronization validation too (unless SBITS_VULKAN_SYNC_VALIDATION=0): it
// reports a missing barrier between two ops that touch the same memory as an error, which is
// what checks the stream's barrier elision (vk_stream.h).
VkInstance create_instance(bool validation) {
  VkApplicationInfo app{VK_STRUCTURE_TYPE_APPLICATION_INFO};
  app.pApplicationName = "sbits";
  app.pEngineName = "sbits";
  app.apiVersion = VK_API_VERSION_1_2;
  VkInstanceCreateInfo ci{VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO};
  ci.pApplicationInfo = &app;
  const char* layers[] = {kValidationLayer};
  const char* exts[] = {VK_EXT_DEBUG_UTILS_EXTENSION_NAME, VK_EXT_VALIDATION_FEATURES_EXTENSION_NAME};
  const VkValidationFeatureEnableEXT sync = VK_VALIDATION_FEATURE_ENABLE_SYNCHRONIZATION_VALIDATION_EXT;
  VkValidationFeaturesEXT features{VK_STRUCTURE_TYPE_VALIDATION_FEATURES_EXT};
  features.enabledValidationFeatureCount = 1;
  features.pEnabledValidationFeatures = &sync;
  if (validation) {
    ci.enabledLayerCount = 1;
    ci.ppEnabledLayerNames = layers;
    ci.enabledExtensionCount = 1;
    ci.ppEnabledExtensionNames = exts;
    if (env_flag("SBITS_VULKAN_SYNC_VALIDATION", true)) {
      ci.enabledExtensionCount = 2;
      ci.pNext = &features;
    }
  }
  VkInstance inst = VK_NULL_HANDLE;
  VK_CHECK(vkCreateInstance(&ci, nullptr, &inst));
  return inst;
}

// Physical devices in preference order: discrete, integrated, virtual, CPU; ties keep the
// driver's order.
std::vector<VkPhysicalDevice> ordered_devices(VkInstance inst) {
  uint32_t n = 0;
  VK_CHECK(vkEnumeratePhysicalDevices(inst, &n, nullptr));
  std::vector<VkPhysicalDevice> devs(n);
  VK_CHECK(vkEnumeratePhysicalDevices(inst, &n, devs.data()));
  devs.resize(n);
  std::stable_sort(devs.begin(), devs.end(), [](VkPhysicalDevice a, VkPhysicalDevice b) {
    VkPhysicalDeviceProperties pa, pb;
    vkGetPhysicalDeviceProperties(a, &pa);
    vkGetPhysicalDeviceProperties(b, &pb);
    return type_rank(pa.deviceType) < type_rank(pb.deviceType);
  });
  return devs;
}

VulkanDeviceInfo describe(VkPhysicalDevice d, int index) {
  VkPhysicalDeviceDriverProperties drv{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES};
  VkPhysicalDeviceProperties2 p2{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2};
  p2.pNext = &drv;
  vkGetPhysicalDeviceProperties2(d, &p2);
  VkPhysicalDeviceMemoryProperties mp;
  vkGetPhysicalDeviceMemoryProperties(d, &mp);
  VulkanDeviceInfo info;
  info.index = index;
  info.name = p2.properties.deviceName;
  info.type = type_name(p2.properties.deviceType);
  info.driver = std::string(drv.driverName) + (drv.driverInfo[0] ? std::string(" ") + drv.driverInfo : "");
  info.api_version = p2.properties.apiVersion;
  for (uint32_t i = 0; i < mp.memoryHeapCount; ++i)
    if (mp.memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) info.device_local_bytes += mp.memoryHeaps[i].size;
  return info;
}

}  // namespace

}  // namespace sbits::kernels::vk

namespace sbits::kernels {

std::vector<VulkanDeviceInfo> vulkan_devices() {
  std::vector<VulkanDeviceInfo> out;
  try {
    VkInstance inst = vk::create_instance(false);
    try {
      const auto devs = vk::ordered_devices(inst);
      for (size_t i = 0; i < devs.size(); ++i) out.push_back(vk::describe(devs[i], int(i)));
    } catch (const KernelError&) {
    }
    vkDestroyInstance(inst, nullptr);
  } catch (const KernelError&) {  // no loader or no driver: no devices
  }
  return out;
}

}  // namespace sbits::kernels

namespace sbits::kernels::vk {

Context::Context(int device_index) {
  // Validation: asked for by the environment, or on by default in debug builds; only when the
  // layer is installed (a note says so otherwise).
#ifdef NDEBUG
  const bool want = env_flag("SBITS_VULKAN_VALIDATION", false);
#else
  const bool want = env_flag("SBITS_VULKAN_VALIDATION", true);
#endif
  validation = want && layer_available(kValidationLayer);
  if (want && !validation)
    std::fprintf(stderr, "sbits vulkan: validation requested but %s is not installed\n", kValidationLayer);
  instance = create_instance(validation);
  try {
    if (validation) {
      auto create = reinterpret_cast<PFN_vkCreateDebugUtilsMessengerEXT>(
          vkGetInstanceProcAddr(instance, "vkCreateDebugUtilsMessengerEXT"));
      VkDebugUtilsMessengerCreateInfoEXT mi{VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT};
      mi.messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT;
      mi.messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT;
      mi.pfnUserCallback = on_debug_message;
      mi.pUserData = this;
      if (create) VK_CHECK(create(instance, &mi, nullptr, &messenger_));
    }
    const auto devs = ordered_devices(instance);
    if (device_index < 0 || size_t(device_index) >= devs.size())
      fail("backend", "device ", device_index, " does not exist (this machine has ", devs.size(), " Vulkan device",
           devs.size() == 1 ? "" : "s", "; sbits-run --list-devices lists them)");
    phys = devs[size_t(device_index)];
    info = describe(phys, device_index);
    vkGetPhysicalDeviceProperties(phys, &props);
    vkGetPhysicalDeviceMemoryProperties(phys, &mem_props);
    if (props.apiVersion < VK_API_VERSION_1_1)
      fail("backend", info.name, " supports Vulkan ", VK_API_VERSION_MAJOR(props.apiVersion), ".",
           VK_API_VERSION_MINOR(props.apiVersion), "; the backend needs 1.1 or newer");
    VkPhysicalDeviceSubgroupProperties sg{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES};
    VkPhysicalDeviceProperties2 p2{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2};
    p2.pNext = &sg;
    vkGetPhysicalDeviceProperties2(phys, &p2);
    subgroup_size = sg.subgroupSize;
    subgroup_arith = (sg.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) &&
                     (sg.supportedOperations & VK_SUBGROUP_FEATURE_ARITHMETIC_BIT) && subgroup_size >= 4 &&
                     subgroup_size <= 128 && env_flag("SBITS_VULKAN_SUBGROUPS", true);

    uint32_t nq = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(phys, &nq, nullptr);
    std::vector<VkQueueFamilyProperties> qf(nq);
    vkGetPhysicalDeviceQueueFamilyProperties(phys, &nq, qf.data());
    int family = -1;
    for (uint32_t i = 0; i < nq && family < 0; ++i)
      if (qf[i].queueFlags & VK_QUEUE_COMPUTE_BIT) family = int(i);
    if (family < 0) fail("backend", info.name, " has no compute queue");
    queue_family = uint32_t(family);
    const float prio = 1.0f;
    VkDeviceQueueCreateInfo qi{VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO};
    qi.queueFamilyIndex = queue_family;
    qi.queueCount = 1;
    qi.pQueuePriorities = &prio;
    VkDeviceCreateInfo di{VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO};
    di.queueCreateInfoCount = 1;
    di.pQueueCreateInfos = &qi;
    std::vector<const char*> extensions;
    const void* features = nullptr;  // the pNext chain of feature structures to enable
    VkPhysicalDeviceShaderIntegerDotProductFeaturesKHR dot_feature{
        VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_INTEGER_DOT_PRODUCT_FEATURES_KHR};
    if (integer_dot_supported(phys) && env_flag("SBITS_VULKAN_INTEGER_DOT", true)) {
      integer_dot = true;
      dot_feature.shaderIntegerDotProduct = VK_TRUE;
      features = &dot_feature;
      extensions.push_back(VK_KHR_SHADER_INTEGER_DOT_PRODUCT_EXTENSION_NAME);
    }
    VkPhysicalDeviceCooperativeMatrixFeaturesNV cm_feature{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_NV};
    VkPhysicalDeviceShaderFloat16Int8Features f16_feature{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES};
    // VkPhysicalDeviceShaderFloat16Int8Features is core from Vulkan 1.2 on.
    if (props.apiVersion >= VK_API_VERSION_1_2 && coopmat_supported(instance, phys, subgroup_size) &&
        env_flag("SBITS_VULKAN_COOPMAT", true)) {
      coopmat = true;
      cm_feature.cooperativeMatrix = VK_TRUE;
      f16_feature.shaderFloat16 = VK_TRUE;
      f16_feature.pNext = const_cast<void*>(features);
      cm_feature.pNext = &f16_feature;
      features = &cm_feature;
      extensions.push_back(VK_NV_COOPERATIVE_MATRIX_EXTENSION_NAME);
    }
    const char* stats_ext = VK_KHR_PIPELINE_EXECUTABLE_PROPERTIES_EXTENSION_NAME;
    VkPhysicalDevicePipelineExecutablePropertiesFeaturesKHR stats_feature{
        VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PIPELINE_EXECUTABLE_PROPERTIES_FEATURES_KHR};
    const char* want_stats = std::getenv("SBITS_VULKAN_PIPELINE_STATS");
    if (want_stats && *want_stats && std::string_view(want_stats) != "0") {
      if (device_extension_available(phys, stats_ext)) {
        pipeline_stats = std::string_view(want_stats) == "2" ? 2 : 1;
        stats_feature.pipelineExecutableInfo = VK_TRUE;
        stats_feature.pNext = const_cast<void*>(features);
        features = &stats_feature;
        extensions.push_back(stats_ext);
      } else {
        std::fprintf(stderr, "sbits vulkan: SBITS_VULKAN_PIPELINE_STATS: %s lacks %s\n", info.name.c_str(), stats_ext);
      }
    }
    di.pNext = features;
    di.enabledExtensionCount = uint32_t(extensions.size());
    di.ppEnabledExtensionNames = extensions.data();
    VK_CHECK(vkCreateDevice(phys, &di, nullptr, &device));
    vkGetDeviceQueue(device, queue_family, 0, &queue);
    pool = std::make_unique<MemoryPool>(*this);
  } catch (...) {
    destroy();
    throw;
  }
}

Context::~Context() { destroy(); }

void Context::destroy() {
  pool.reset();  // its blocks before the device
  if (device) vkDestroyDevice(device, nullptr);
  device = VK_NULL_HANDLE;
  if (messenger_) {
    auto destroy_fn = reinterpret_cast<PFN_vkDestroyDebugUtilsMessengerEXT>(
        vkGetInstanceProcAddr(instance, "vkDestroyDebugUtilsMessengerEXT"));
    if (destroy_fn) destroy_fn(instance, messenger_, nullptr);
    messenger_ = VK_NULL_HANDLE;
  }
  if (instance) vkDestroyInstance(instance, nullptr);
  instance = VK_NULL_HANDLE;
}

int Context::find_memory(uint32_t type_bits, VkMemoryPropertyFlags want) const {
  for (uint32_t i = 0; i < mem_props.memoryTypeCount; ++i)
    if ((type_bits & (1u << i)) && (mem_props.memoryTypes[i].propertyFlags & want) == want) return int(i);
  return -1;
}

DeviceBuffer::DeviceBuffer(Context& ctx, size_t bytes_, bool host_visible, const char* op) : ctx_(&ctx) {
  bytes = bytes_;
  alloc_bytes_ = std::max<size_t>(16, (bytes_ + 15) & ~size_t(15));  // shaders read whole uvec4s
  VkBufferCreateInfo bi{VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO};
  bi.size = alloc_bytes_;
  bi.usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT;
  bi.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
  VK_CHECK(vkCreateBuffer(ctx.device, &bi, nullptr, &buffer));
  VkMemoryRequirements req;
  vkGetBufferMemoryRequirements(ctx.device, buffer, &req);
  int type = -1;
  if (host_visible) {
    // Cached host memory reads back fast; coherent spares us flushes.
    type = ctx.find_memory(req.memoryTypeBits, VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT |
                                                   VK_MEMORY_PROPERTY_HOST_COHERENT_BIT |
                                                   VK_MEMORY_PROPERTY_HOST_CACHED_BIT);
    if (type < 0)
      type = ctx.find_memory(req.memoryTypeBits,
                             VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT);
  } else {
    type = ctx.find_memory(req.memoryTypeBits, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT);
    if (type < 0) type = ctx.find_memory(req.memoryTypeBits, 0);
  }
  if (type < 0) {
    vkDestroyBuffer(ctx.device, buffer, nullptr);
    buffer = VK_NULL_HANDLE;
    fail(op, "no ", host_visible ? "host-visible coherent" : "device", " memory type for a buffer of ", bytes_,
         " bytes");
  }
  if (!host_visible && req.size <= MemoryPool::kMaxPooled) {
    try {
      range_ = ctx.pool->allocate(uint32_t(type), req.size, req.alignment, op);
    } catch (...) {
      vkDestroyBuffer(ctx.device, buffer, nullptr);
      buffer = VK_NULL_HANDLE;
      throw;
    }
    VK_CHECK(vkBindBufferMemory(ctx.device, buffer, range_.memory, range_.offset));
    ctx.live_bytes += alloc_bytes_;
    return;
  }
  VkMemoryAllocateInfo ai{VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO};
  ai.allocationSize = req.size;
  ai.memoryTypeIndex = uint32_t(type);
  const VkResult r = vkAllocateMemory(ctx.device, &ai, nullptr, &memory_);
  if (r != VK_SUCCESS) {
    vkDestroyBuffer(ctx.device, buffer, nullptr);
    buffer = VK_NULL_HANDLE;
    fail(op, "allocating ", bytes_, " bytes of ", host_visible ? "host-visible" : "device", " memory failed with ",
         vk_result_name(r));
  }
  VK_CHECK(vkBindBufferMemory(ctx.device, buffer, memory_, 0));
  if (host_visible) VK_CHECK(vkMapMemory(ctx.device, memory_, 0, VK_WHOLE_SIZE, 0, &mapped));
  ctx.live_bytes += alloc_bytes_;
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    release();
    ctx_ = o.ctx_;
    buffer = o.buffer;
    memory_ = o.memory_;
    range_ = o.range_;
    o.range_ = MemoryPool::Range{};
    bytes = o.bytes;
    alloc_bytes_ = o.alloc_bytes_;
    mapped = o.mapped;
    o.buffer = VK_NULL_HANDLE;
    o.memory_ = VK_NULL_HANDLE;
    o.mapped = nullptr;
    o.bytes = o.alloc_bytes_ = 0;
  }
  return *this;
}

void DeviceBuffer::release() {
  if (!ctx_) return;
  if (buffer) vkDestroyBuffer(ctx_->device, buffer, nullptr);
  if (memory_ || range_.memory) {
    if (memory_) {
      if (mapped) vkUnmapMemory(ctx_->device, memory_);
      vkFreeMemory(ctx_->device, memory_, nullptr);
    } else {
      ctx_->pool->release(range_);
    }
    ctx_->live_bytes -= alloc_bytes_;
    ctx_->buffers_destroyed++;
  }
  buffer = VK_NULL_HANDLE;
  memory_ = VK_NULL_HANDLE;
  range_ = MemoryPool::Range{};
  mapped = nullptr;
}

MemoryPool::~MemoryPool() {
  for (Block& b : blocks_) vkFreeMemory(ctx_.device, b.memory, nullptr);
}

bool MemoryPool::carve(Block& b, VkDeviceSize size, VkDeviceSize align, VkDeviceSize* offset) {
  for (auto it = b.free.begin(); it != b.free.end(); ++it) {
    const VkDeviceSize start = it->first, len = it->second;
    const VkDeviceSize at = (start + align - 1) / align * align;
    if (at + size > start + len) continue;
    b.free.erase(it);
    if (at > start) b.free.emplace(start, at - start);
    if (at + size < start + len) b.free.emplace(at + size, start + len - (at + size));
    *offset = at;
    return true;
  }
  return false;
}

MemoryPool::Range MemoryPool::allocate(uint32_t type, VkDeviceSize size, VkDeviceSize align, const char* op) {
  std::lock_guard<std::mutex> lock(mutex_);
  align = std::max<VkDeviceSize>(align, 16);
  Range r;
  r.size = size;
  for (size_t i = 0; i < blocks_.size(); ++i) {
    if (blocks_[i].type != type || !carve(blocks_[i], size, align, &r.offset)) continue;
    r.memory = blocks_[i].memory;
    r.block = int(i);
    return r;
  }
  Block b;
  b.type = type;
  VkMemoryAllocateInfo ai{VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO};
  ai.allocationSize = kBlockBytes;
  ai.memoryTypeIndex = type;
  const VkResult res = vkAllocateMemory(ctx_.device, &ai, nullptr, &b.memory);
  if (res != VK_SUCCESS)
    fail(op, "allocating a ", kBlockBytes >> 20, " MiB block of device memory failed with ", vk_result_name(res),
         " (", ctx_.live_bytes.load(), " bytes in use)");
  b.free.emplace(0, kBlockBytes);
  blocks_.push_back(std::move(b));
  carve(blocks_.back(), size, align, &r.offset);  // size <= kMaxPooled < kBlockBytes: fits
  r.memory = blocks_.back().memory;
  r.block = int(blocks_.size() - 1);
  return r;
}

void MemoryPool::release(const Range& r) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (r.block < 0 || size_t(r.block) >= blocks_.size()) return;
  auto& free = blocks_[size_t(r.block)].free;
  VkDeviceSize start = r.offset, len = r.size;
  auto next = free.lower_bound(start);
  if (next != free.end() && start + len == next->first) {  // merge with the range after
    len += next->second;
    next = free.erase(next);
  }
  if (next != free.begin()) {  // merge with the range before
    auto prev = std::prev(next);
    if (prev->first + prev->second == start) {
      start = prev->first;
      len += prev->second;
      free.erase(prev);
    }
  }
  free.emplace(start, len);
}

DeviceBuffer::~DeviceBuffer() { release(); }

PipelineCache::~PipelineCache() {
  for (auto& [name, p] : pipelines_) {
    vkDestroyPipeline(ctx_.device, p.pipeline, nullptr);
    vkDestroyPipelineLayout(ctx_.device, p.layout, nullptr);
    vkDestroyDescriptorSetLayout(ctx_.device, p.set_layout, nullptr);
  }
  for (auto& [name, m] : modules_) vkDestroyShaderModule(ctx_.device, m, nullptr);
}

const Pipeline& PipelineCache::get(const std::string& name, const std::string& family, uint32_t n_bindings,
                                   const std::vector<uint32_t>& spec) {
  auto it = pipelines_.find(name);
  if (it != pipelines_.end()) return it->second;
  VkShaderModule& module = modules_[family];
  if (!module) {
    const ShaderCode code = shader_code(family, ctx_.subgroup_arith);
    VkShaderModuleCreateInfo mi{VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO};
    mi.codeSize = code.n_words * 4;
    mi.pCode = code.words;
    VK_CHECK(vkCreateShaderModule(ctx_.device, &mi, nullptr, &module));
  }
  Pipeline p;
  p.name = name;
  p.n_bindings = n_bindings;
  p.writes = shader_writes(family, spec);
  std::vector<VkDescriptorSetLayoutBinding> b(n_bindings);
  for (uint32_t i = 0; i < n_bindings; ++i)
    b[i] = {i, VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, 1, VK_SHADER_STAGE_COMPUTE_BIT, nullptr};
  VkDescriptorSetLayoutCreateInfo li{VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO};
  li.bindingCount = n_bindings;
  li.pBindings = b.data();
  VK_CHECK(vkCreateDescriptorSetLayout(ctx_.device, &li, nullptr, &p.set_layout));
  VkPushConstantRange pc{VK_SHADER_STAGE_COMPUTE_BIT, 0, 128};
  VkPipelineLayoutCreateInfo pli{VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO};
  pli.setLayoutCount = 1;
  pli.pSetLayouts = &p.set_layout;
  pli.pushConstantRangeCount = 1;
  pli.pPushConstantRanges = &pc;
  VK_CHECK(vkCreatePipelineLayout(ctx_.device, &pli, nullptr, &p.layout));
  std::vector<VkSpecializationMapEntry> entries(spec.size());
  for (size_t i = 0; i < spec.size(); ++i) entries[i] = {uint32_t(i), uint32_t(i * 4), 4};
  VkSpecializationInfo si{uint32_t(spec.size()), entries.data(), spec.size() * 4, spec.data()};
  VkComputePipelineCreateInfo ci{VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO};
  ci.stage = {VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO};
  ci.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
  ci.stage.module = module;
  ci.stage.pName = "main";
  ci.stage.pSpecializationInfo = spec.empty() ? nullptr : &si;
  ci.layout = p.layout;
  if (ctx_.pipeline_stats)
    ci.flags = VK_PIPELINE_CREATE_CAPTURE_STATISTICS_BIT_KHR |
               (ctx_.pipeline_stats == 2 ? VK_PIPELINE_CREATE_CAPTURE_INTERNAL_REPRESENTATIONS_BIT_KHR : 0);
  VK_CHECK(vkCreateComputePipelines(ctx_.device, VK_NULL_HANDLE, 1, &ci, nullptr, &p.pipeline));
  if (ctx_.pipeline_stats) report_pipeline_statistics(ctx_, p.pipeline, name);
  return pipelines_.emplace(name, p).first->second;
}

}  // namespace sbits::kernels::vk
