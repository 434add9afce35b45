// Vulkan backend setup: device, memory (weights, buffers, KV caches), reads and writes.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>

#include "kernels/vulkan/vk_backend_impl.h"

namespace sbits::kernels {

std::unique_ptr<Backend> make_vulkan_backend(int device) { return std::make_unique<vk::VulkanBackend>(device); }

VulkanStats vulkan_stats(const Backend& backend) {
  const auto* b = dynamic_cast<const vk::VulkanBackend*>(&backend);
  if (!b) fail("stats", "backend '", backend.name(), "' is not a Vulkan backend");
  return b->stats();
}

double vulkan_copy_seconds(Backend& backend, size_t bytes, int iters) {
  auto* b = dynamic_cast<vk::VulkanBackend*>(&backend);
  if (!b) fail("copy benchmark", "backend '", backend.name(), "' is not a Vulkan backend");
  return b->copy_seconds(bytes, iters, false);
}

double vulkan_compute_copy_seconds(Backend& backend, size_t bytes, int iters) {
  auto* b = dynamic_cast<vk::VulkanBackend*>(&backend);
  if (!b) fail("copy benchmark", "backend '", backend.name(), "' is not a Vulkan backend");
  return b->copy_seconds(bytes, iters, true);
}

}  // namespace sbits::kernels

namespace sbits::kernels::vk {
namespace {

constexpr size_t kStagingBytes = size_t(16) << 20;
// Writes up to this size go through the argument ring, in order with the recorded ops; larger
// ones (weight-sized) drain and copy through staging.
constexpr size_t kMaxRingWrite = size_t(1) << 20;

size_t dense_elem_bytes(WeightType t) { return t == WeightType::f32 ? 4 : 2; }

int env_int(const char* name, int fallback, int lo, int hi) {
  const char* e = std::getenv(name);
  if (!e || !*e) return fallback;
  char* end = nullptr;
  const long v = std::strtol(e, &end, 10);
  if (*end || v < lo || v > hi) fail("backend", name, "='", e, "' is not an integer in [", lo, ", ", hi, "]");
  return int(v);
}

}  // namespace

State::State(int device) : ctx(device), pipes(ctx), stream(ctx), staging(ctx, kStagingBytes, true, "staging") {}

void State::drain() {
  std::lock_guard<std::recursive_mutex> lock(mutex);
  stream.flush();
}

void State::upload(VkBuffer dst, size_t dst_off, const void* src, size_t bytes) {
  std::lock_guard<std::recursive_mutex> lock(mutex);
  stream.flush();
  for (size_t done = 0; done < bytes;) {
    const size_t chunk = std::min(bytes - done, staging.bytes);
    std::memcpy(staging.mapped, static_cast<const uint8_t*>(src) + done, chunk);
    stream.copy(staging.buffer, 0, dst, dst_off + done, chunk);
    stream.flush();
    done += chunk;
  }
}

void State::download(void* dst, VkBuffer src, size_t src_off, size_t bytes) {
  std::lock_guard<std::recursive_mutex> lock(mutex);
  for (size_t done = 0; done < bytes;) {
    const size_t chunk = std::min(bytes - done, staging.bytes);
    stream.copy(src, src_off + done, staging.buffer, 0, chunk);
    stream.flush();  // also runs whatever was recorded before the read
    std::memcpy(static_cast<uint8_t*>(dst) + done, staging.mapped, chunk);
    done += chunk;
  }
}

void Resource::release_guard() noexcept {
  try {
    if (st) st->drain();
  } catch (...) {  // a destructor cannot report; the memory is released regardless
  }
}

const VkWeightObj& vk_weight(const Weight& w, const char* op) {
  const auto* c = dynamic_cast<const VkWeightObj*>(&w);
  if (!c) fail(op, "the weight was not uploaded to the Vulkan backend");
  return *c;
}

VkBufferObj& vk_buffer(Buffer& b, const char* op, const char* what) {
  auto* c = dynamic_cast<VkBufferObj*>(&b);
  if (!c) fail(op, what, " is not a Vulkan backend buffer");
  return *c;
}

const VkBufferObj& vk_buffer(const Buffer& b, const char* op, const char* what) {
  const auto* c = dynamic_cast<const VkBufferObj*>(&b);
  if (!c) fail(op, what, " is not a Vulkan backend buffer");
  return *c;
}

static void check_binding_size(const Context& ctx, const char* op, size_t bytes) {
  if (bytes > ctx.props.limits.maxStorageBufferRange)
    fail(op, bytes, " bytes exceed the ", ctx.info.name, "'s largest storage buffer (maxStorageBufferRange ",
         ctx.props.limits.maxStorageBufferRange, " bytes)");
}

VkBufferObj::VkBufferObj(std::shared_ptr<State> s, size_t n) : Resource(std::move(s)) {
  count = n;
  const size_t bytes = checked_mul("alloc", int64_t(n), 4);
  check_binding_size(st->ctx, "alloc", bytes);
  mem = DeviceBuffer(st->ctx, bytes, false, "alloc");
  // Zeroed like the CPU's buffers; recorded, so it runs in order before any later op.
  st->stream.reserve(0, 1, "alloc");
  st->stream.zero(mem.buffer, 0, (std::max<size_t>(bytes, 16) + 15) & ~size_t(15));
}

VkBufferObj::~VkBufferObj() {
  release_guard();
  if (!st) return;
  st->stream.forget(mem.buffer);
  st->stream.forget(digits.buffer);
}

VkWeightObj::~VkWeightObj() {
  release_guard();
  if (!st) return;
  st->stream.forget(partial.buffer);  // written by the split matvec
  st->stream.forget(counters.buffer);
}

VkKvCacheObj::VkKvCacheObj(std::shared_ptr<State> s, const KvCacheDesc& d) : Resource(std::move(s)) {
  const char* op = "create_kv_cache";
  if (d.n_layers <= 0 || d.n_slots <= 0 || d.n_ctx <= 0 || d.n_kv_heads <= 0 || d.head_dim <= 0)
    fail(op, "every size must be positive, got n_layers=", d.n_layers, " n_slots=", d.n_slots, " n_ctx=", d.n_ctx,
         " n_kv_heads=", d.n_kv_heads, " head_dim=", d.head_dim);
  if (d.type != KvType::f16 && d.type != KvType::f32) fail(op, "unsupported KV type ", uint32_t(d.type));
  if (d.head_dim % 2 != 0 || d.head_dim > 256)
    fail(op, "head_dim ", d.head_dim, ": the Vulkan attention takes even head_dim up to 256");
  desc = d;
  size_t elems = checked_mul(op, d.n_layers, d.n_slots);
  elems = checked_mul(op, int64_t(elems), d.n_kv_heads);
  elems = checked_mul(op, int64_t(elems), d.n_ctx);
  elems = checked_mul(op, int64_t(elems), d.head_dim);
  const size_t bytes = checked_mul(op, int64_t(elems), d.type == KvType::f16 ? 2 : 4);
  check_binding_size(st->ctx, op, bytes);
  k = DeviceBuffer(st->ctx, bytes, false, op);
  v = DeviceBuffer(st->ctx, bytes, false, op);
  // Zeroed, like the CPU cache, so that nothing ever reads uninitialised memory.
  st->stream.reserve(0, 2, op);
  st->stream.zero(k.buffer, 0, (bytes + 15) & ~size_t(15));
  st->stream.zero(v.buffer, 0, (bytes + 15) & ~size_t(15));
  stored_end.assign(size_t(d.n_layers) * size_t(d.n_slots), 0);
}

VulkanBackend::VulkanBackend(int device) : st_(std::make_shared<State>(device)) {
  const Context& c = st_->ctx;
  description_ = c.info.name + " (Vulkan " + std::to_string(VK_API_VERSION_MAJOR(c.props.apiVersion)) + "." +
                 std::to_string(VK_API_VERSION_MINOR(c.props.apiVersion)) + ", " + c.info.type + ", " +
                 c.info.driver + ", " + std::to_string((c.info.device_local_bytes + (1u << 29)) >> 30) + " GiB" +
                 (c.subgroup_arith ? ", subgroups " + std::to_string(c.subgroup_size) : std::string()) + ")";
  // Tuning knob for benchmarks and tests: rows per workgroup of the tiled matvec (8, 16, 32
  // or 64; unset: 64 on CPU drivers, 8 on GPUs).
  matvec_rows_ = env_int("SBITS_VULKAN_MATVEC_ROWS", 0, 0, 64);
  if (matvec_rows_ != 0 && matvec_rows_ != 8 && matvec_rows_ != 16 && matvec_rows_ != 32 && matvec_rows_ != 64)
    fail("backend", "SBITS_VULKAN_MATVEC_ROWS=", matvec_rows_, " must be 8, 16, 32 or 64");
  // The split matvec (matvec_tiled.comp) for n = 1 on weights of its tile shape: on GPUs by
  // default; on CPU drivers only when asked (its many small workgroups cost llvmpipe ~60 us
  // each). SBITS_VULKAN_MATVEC_GROUPS: groups of 32 invocations a matvec aims to fill the device
  // with (the columns are split across workgroups until it does).
  split_matvec_ = env_int("SBITS_VULKAN_MATVEC_SPLIT", c.info.type == "cpu" ? 0 : 1, 0, 1) != 0;
  matvec_groups_ = env_int("SBITS_VULKAN_MATVEC_GROUPS", 2048, 1, 1 << 20);
  // Integer dot products in the split matvec where the device has them
  // (SBITS_VULKAN_INTEGER_DOT=0 turns them off: Context).
  integer_dot_ = c.integer_dot;
  // Attention's splits of the positions (1..64; unset: vk_ops.cpp's rule for decode).
  attn_splits_ = env_int("SBITS_VULKAN_ATTN_SPLITS", 0, 0, 64);
  attn_min_chunk_ = env_int("SBITS_VULKAN_ATTN_MIN_CHUNK", 64, 1, 4096);
  // Prefill attention over 32 query rows per workgroup (0: attention.comp for every batch).
  attn_prefill_ = env_int("SBITS_VULKAN_ATTN_PREFILL", 1, 0, 1) != 0;
  // matvec_tiled.comp's tuning switch (its specialization constant AHEAD).
  const uint32_t ahead = uint32_t(env_int("SBITS_VULKAN_MATVEC_AHEAD", 1, 0, 1));
  matvec_switches_[0] = {ahead, 0};
  matvec_switches_[1] = {ahead, 1};
}

int VulkanBackend::preferred_prefill_rows() const { return st_->ctx.info.type == "cpu" ? 64 : 512; }

VulkanStats VulkanBackend::stats() const {
  std::lock_guard<std::recursive_mutex> lock(st_->mutex);
  VulkanStats s;
  s.ops = st_->stream.ops;
  s.submits = st_->stream.submits;
  s.replays = st_->stream.replays;
  s.barriers = st_->stream.barriers;
  s.validation_errors = st_->ctx.validation_errors;
  s.validation = st_->ctx.validation;
  s.subgroup_reductions = st_->ctx.subgroup_arith;
  s.integer_dot = integer_dot_;
  s.cooperative_matrix = st_->ctx.coopmat;
  s.device_bytes = st_->ctx.live_bytes;
  return s;
}

double VulkanBackend::copy_seconds(size_t bytes, int iters, bool compute) {
  std::lock_guard<std::recursive_mutex> lock(st_->mutex);
  if (iters < 1 || bytes == 0 || bytes % 16)
    fail("copy benchmark", "need iters >= 1 and bytes a positive multiple of 16");
  if (bytes / 16 > 0xffffffffu) fail("copy benchmark", bytes, " bytes: at most 2^32 words of 16 bytes");
  DeviceBuffer a(st_->ctx, bytes, false, "copy benchmark"), b(st_->ctx, bytes, false, "copy benchmark");
  const uint32_t words = uint32_t(bytes / 16);
  const uint32_t groups = uint32_t(std::min<size_t>(65535, std::max<size_t>(1, (bytes >> 20) * 4)));
  auto copy = [&](VkBuffer from, VkBuffer to) {
    if (!compute) return st_->stream.copy(from, 0, to, 0, bytes);
    st_->stream.dispatch(pipeline("copy", {}, 2), {BufRef{from}, BufRef{to}}, &words, 4, groups);
  };
  st_->stream.flush();
  st_->stream.reserve(0, 2, "copy benchmark");
  st_->stream.zero(a.buffer, 0, bytes);
  copy(a.buffer, b.buffer);  // warm up (and the pipeline)
  st_->stream.flush();
  st_->stream.reserve(0, uint32_t(iters), "copy benchmark");
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; ++i) (i % 2 ? copy(b.buffer, a.buffer) : copy(a.buffer, b.buffer));
  st_->stream.flush();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / iters;
}

const Pipeline& VulkanBackend::pipeline(const std::string& family, const std::vector<uint32_t>& spec,
                                        uint32_t n_bindings) {
  std::string name = family;
  for (uint32_t v : spec) {  // e.g. tiled_0_3_8 (appended piecewise: GCC 12 warns on "_" + string)
    name += '_';
    name += std::to_string(v);
  }
  return st_->pipes.get(name, family, n_bindings, spec);
}

void VulkanBackend::dispatch_1d(const Pipeline& p, std::initializer_list<BufRef> b, const void* push,
                                size_t push_bytes, size_t count) {
  const size_t groups = (count + 255) / 256;
  if (groups == 0) return;
  const size_t gx = std::min<size_t>(groups, 65535), gy = (groups + gx - 1) / gx;
  if (gy > 65535) fail("dispatch", count, " invocations exceed the grid the backend uses");
  st_->stream.dispatch(p, b, push, push_bytes, uint32_t(gx), uint32_t(gy));
}

DeviceBuffer& VulkanBackend::scratch(DeviceBuffer& b, size_t bytes, bool host_visible, const char* what) {
  if (b.buffer && b.bytes >= bytes) return b;
  st_->stream.flush();  // the old buffer may be in use by what was recorded
  const size_t grown = std::max(bytes, b.bytes + b.bytes / 2);
  check_binding_size(st_->ctx, what, grown);
  b = DeviceBuffer(st_->ctx, grown, host_visible, what);
  return b;
}

std::unique_ptr<Weight> VulkanBackend::upload(const HostWeight& w) {
  const char* op = "upload";
  std::lock_guard<std::recursive_mutex> lock(st_->mutex);
  if (w.type == WeightType::tiled) return upload_tiled(w);  // vk_matmul.cpp
  if (w.type != WeightType::f32 && w.type != WeightType::f16 && w.type != WeightType::bf16)
    fail(op, "unsupported weight type ", uint32_t(w.type), " (the Vulkan backend has f32, f16, bf16, tiled)");
  if (w.rows <= 0 || w.cols <= 0) fail(op, "rows and cols must be positive, got ", w.rows, " x ", w.cols);
  const size_t need = checked_mul(op, w.rows, int64_t(checked_mul(op, w.cols, int64_t(dense_elem_bytes(w.type)))));
  if (w.bytes < need)
    fail(op, "a ", w.rows, " x ", w.cols, " ", weight_type_name(w.type), " weight needs ", need, " bytes, got ",
         w.bytes);
  if (!w.data) fail(op, "data is null");
  check_binding_size(st_->ctx, op, need);
  auto out = std::make_unique<VkWeightObj>(st_);
  out->type = w.type;
  out->rows = w.rows;
  out->cols = w.cols;
  out->mem = DeviceBuffer(st_->ctx, need, false, op);
  st_->upload(out->mem.buffer, 0, w.data, need);
  return out;
}

std::unique_ptr<Buffer> VulkanBackend::alloc(size_t count) {
  std::lock_guard<std::recursive_mutex> lock(st_->mutex);
  return std::make_unique<VkBufferObj>(st_, count);
}

void VulkanBackend::write(Buffer& dst, const float* src, size_t count, size_t offset) {
  const char* op = "write";
  std::lock_guard<std::recursive_mutex> lock(st_->mutex);
  VkBufferObj& d = vk_buffer(dst, op, "dst");
  if (offset > d.count || count > d.count - offset)
    fail(op, "range [", offset, ", ", offset, " + ", count, ") exceeds the buffer's ", d.count, " floats");
  if (count == 0) return;
  if (!src) fail(op, "src is null");
  const size_t bytes = count * sizeof(float);
  if (bytes > kMaxRingWrite) {
    st_->upload(d.mem.buffer, offset * sizeof(float), src, bytes);
    return;
  }
  st_->stream.reserve(bytes, 1, op);
  const BufRef s = st_->stream.stage(src, bytes);
  st_->stream.copy(s.buffer, s.offset, d.mem.buffer, offset * sizeof(float), bytes);
}

void VulkanBackend::read(const Buffer& src, float* dst, size_t count, size_t offset) {
  const char* op = "read";
  std::lock_guard<std::recursive_mutex> lock(st_->mutex);
  const VkBufferObj& s = vk_buffer(src, op, "src");
  if (offset > s.count || count > s.count - offset)
    fail(op, "range [", offset, ", ", offset, " + ", count, ") exceeds the buffer's ", s.count, " floats");
  if (count == 0) return;
  if (!dst) fail(op, "dst is null");
  st_->download(dst, s.mem.buffer, offset * sizeof(float), count * sizeof(float));
}

std::unique_ptr<KvCache> VulkanBackend::create_kv_cache(const KvCacheDesc& desc) {
  std::lock_guard<std::recursive_mutex> lock(st_->mutex);
  return std::make_unique<VkKvCacheObj>(st_, desc);
}

void VulkanBackend::synchronize() { st_->drain(); }

}  // namespace sbits::kernels::vk
