// The Vulkan backend's classes, shared by the files that implement its ops (vk_backend.cpp:
// setup, memory, reads and writes; vk_ops.cpp: row and element-wise ops, KV cache, attention,
// top_k; vk_matmul.cpp: matmul on every weight type, tiled embed).
#pragma once

#include <algorithm>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "kernels/vulkan/vk_stream.h"
#include "kernels/vulkan/vulkan_backend.h"

namespace sbits::kernels::vk {

// Everything one device needs; shared by the backend and every object it made. Member order
// is destruction order reversed: the stream and pipelines go before the device.
struct State {
  explicit State(int device);
  // Submits what was recorded and waits.
  void drain();
  // Host <-> device copies through the staging buffer (in chunks; they drain first).
  void upload(VkBuffer dst, size_t dst_off, const void* src, size_t bytes);
  void download(void* dst, VkBuffer src, size_t src_off, size_t bytes);

  Context ctx;
  PipelineCache pipes;
  Stream stream;
  DeviceBuffer staging;
  std::recursive_mutex mutex;
};

// A resource keeps the device alive and drains the recorded ops before its memory goes.
class Resource {
 public:
  explicit Resource(std::shared_ptr<State> s) : st(std::move(s)) {}
  void release_guard() noexcept;
  std::shared_ptr<State> st;
};

class VkBufferObj final : public Buffer, public Resource {
 public:
  VkBufferObj(std::shared_ptr<State> s, size_t n);
  ~VkBufferObj() override;
  BufRef ref() const { return BufRef{mem.buffer, 0, VK_WHOLE_SIZE}; }
  DeviceBuffer mem;
  // The first digits_rows rows in the integer form matvec_dot.comp reads (xq.comp), made on
  // demand by the matvec or by the op that wrote row 0 (fuse_digits): current while the
  // stream's write count of mem is digits_at. A cache of mem's contents, so it may change
  // behind a const reference.
  mutable DeviceBuffer digits;
  mutable uint64_t digits_at = ~uint64_t(0);
  mutable uint32_t digits_tiles = 0;  // tile columns digits holds
  mutable int digits_rows = 0;        // rows of x digits holds (the fused ops write row 0)
};

class VkWeightObj final : public Weight, public Resource {
 public:
  explicit VkWeightObj(std::shared_ptr<State> s) : Resource(std::move(s)) {}
  ~VkWeightObj() override;
  DeviceBuffer mem;    // dense elements, or the tiled tensor bytes
  DeviceBuffer table;  // tiled: per tile (bits, byte offset / 16) as two u32
  uint32_t tile_rows = 0, tile_cols = 0, group = 0;
  uint32_t tiles_r = 0, tiles_c = 0;
  // The split matvec's plan and state (matvec_tiled.comp), for weights it takes: workgroups per
  // strip (grid y), tiles per chunk, per-split partial row sums (splits > 1; for partial_rows
  // rows of x, grown to the most a call has had) and per-strip counters (for 8 rows of x).
  // splits == 0: the weight takes tiled.comp only.
  uint32_t splits = 0, tiles_per_chunk = 0;
  mutable DeviceBuffer partial;
  mutable int partial_rows = 0;
  DeviceBuffer counters;
};

class VkKvCacheObj final : public KvCache, public Resource {
 public:
  VkKvCacheObj(std::shared_ptr<State> s, const KvCacheDesc& d);
  ~VkKvCacheObj() override { release_guard(); }
  size_t bytes() const override { return k.bytes + v.bytes; }
  DeviceBuffer k, v;
  // 1 + the highest position stored per (layer, slot), tracked on the host when kv_store is
  // recorded: attention refuses to read past it.
  std::vector<int32_t> stored_end;
  int32_t& end(int layer, int slot) { return stored_end[size_t(layer) * size_t(desc.n_slots) + size_t(slot)]; }
  void mark_stored(int layer, const RowInfo* rows, int n) {
    for (int r = 0; r < n; ++r) end(layer, rows[r].slot) = std::max(end(layer, rows[r].slot), rows[r].pos + 1);
  }
};

class VulkanBackend final : public Backend {
 public:
  explicit VulkanBackend(int device);

  std::string name() const override { return "vulkan"; }
  // 512 on GPUs; CPU drivers (llvmpipe) keep the CPU's 64.
  int preferred_prefill_rows() const override;
  std::string device_description() const override { return description_; }

  std::unique_ptr<Weight> upload(const HostWeight& w) override;
  std::unique_ptr<Buffer> alloc(size_t count) override;
  void write(Buffer& dst, const float* src, size_t count, size_t offset) override;
  void read(const Buffer& src, float* dst, size_t count, size_t offset) override;
  std::unique_ptr<KvCache> create_kv_cache(const KvCacheDesc& desc) override;
  void synchronize() override;

  void embed(const Weight& table, const int32_t* ids, int n, Buffer& out) override;
  void rmsnorm(const Buffer& x, const Weight& w, float eps, int n, Buffer& out) override;
  void matmul(const Weight& w, const Buffer& x, int n, Buffer& y, bool accumulate) override;
  void rope(Buffer& x, int n, int n_heads, int head_dim, const RowInfo* rows, float theta,
            RopeStyle style) override;
  void kv_store(KvCache& cache, int layer, const Buffer& k, const Buffer& v, int n, const RowInfo* rows) override;
  void rope_and_store(Buffer& q, Buffer& k, const Buffer& v, KvCache& cache, int layer, int n, const RowInfo* rows,
                      const AttentionShape& shape, float theta, RopeStyle style) override;
  void attention(const Buffer& q, const KvCache& cache, int layer, int n, const RowInfo* rows,
                 const AttentionShape& shape, Buffer& out) override;
  void swiglu(const Buffer& gate, const Buffer& up, size_t count, Buffer& out) override;
  void add(Buffer& x, const Buffer& y, size_t count) override;
  void get_rows(const Buffer& x, const int32_t* src_rows, int n, int width, Buffer& out) override;
  void top_k(const Buffer& logits, int n, int width, int k, int32_t* ids, float* vals) override;

  VulkanStats stats() const;
  // Seconds per copy of `bytes` between two device buffers: vkCmdCopyBuffer, or a compute shader.
  double copy_seconds(size_t bytes, int iters, bool compute);

 private:
  std::unique_ptr<Weight> upload_tiled(const HostWeight& w);
  void matmul_dense(const VkWeightObj& w, const VkBufferObj& x, int n, VkBufferObj& y, bool accumulate);
  void matmul_tiled(const VkWeightObj& w, const VkBufferObj& x, int n, VkBufferObj& y, bool accumulate);
  void matvec_tiled(const VkWeightObj& w, const VkBufferObj& x, int n, VkBufferObj& y, bool accumulate);
  void matvec_split(const VkWeightObj& w, const VkBufferObj& x, int n, VkBufferObj& y, bool accumulate);
  // The integer form of x's first n rows of tiles_c tile columns (matvec_dot.comp), converted
  // if x changed since.
  BufRef x_digits(const VkBufferObj& x, uint32_t tiles_c, int n);
  // Whether the op making row 0 of `out` (width values) should write its digits too (rmsnorm,
  // swiglu, attention); the dispatch for the first two (xq.comp OP 1 rmsnorm, 2 swiglu; a and b
  // its bindings A and B); and the note, after such an op, that out's row 0 digits are current.
  bool fuse_digits(const VkBufferObj& out, size_t width) const;
  void dispatch_with_digits(uint32_t op, uint32_t wtype, BufRef a, BufRef b, const VkBufferObj& out, float eps);
  void digits_written(const VkBufferObj& out);
  struct XqPush {
    uint32_t tiles_c;
    float eps;
  };
  void plan_split_matvec(VkWeightObj& w);
  void attention_prefill(const VkBufferObj& q, const VkKvCacheObj& c, int layer, int n, const RowInfo* rows,
                         const AttentionShape& shape, VkBufferObj& out);
  uint32_t matvec_rows() const;  // rows per workgroup of the tiled matvec
  // Grows a scratch buffer to at least `bytes` (draining first: recorded ops may use it).
  DeviceBuffer& scratch(DeviceBuffer& b, size_t bytes, bool host_visible, const char* what);
  const Pipeline& pipeline(const std::string& family, const std::vector<uint32_t>& spec, uint32_t n_bindings);
  // One dispatch over `count` invocations of 256 (split into a 2-D grid above 65535 groups).
  void dispatch_1d(const Pipeline& p, std::initializer_list<BufRef> b, const void* push, size_t push_bytes,
                   size_t count);

  std::shared_ptr<State> st_;
  std::string description_;
  int matvec_rows_ = 0;  // rows per workgroup of the tiled matvec; 0 = chosen from the device
  bool split_matvec_ = false;  // n <= 8 through the split matvec where the weight allows
  bool integer_dot_ = false;   // the split matvec as matvec_dot.comp (x in integer form)
  int matvec_groups_ = 0;      // the split matvec's target of groups of 32 invocations
  // The split matvec's specialization constants (AHEAD, ROWS_Z) for n = 1 and for n > 1.
  std::vector<uint32_t> matvec_switches_[2];
  int attn_splits_ = 0;  // SBITS_VULKAN_ATTN_SPLITS (tests, tuning); 0 = chosen per call
  int attn_min_chunk_ = 64;  // decode attention: positions per split at least (SBITS_VULKAN_ATTN_MIN_CHUNK)
  bool attn_prefill_ = true;  // attention_prefill.comp for n > 8 (SBITS_VULKAN_ATTN_PREFILL=0: off)
  DeviceBuffer dequant_, topk_out_, topk_cand_, attn_partial_, attn_counters_;
};

// The backend's own objects behind interface references, or a KernelError naming the op.
const VkWeightObj& vk_weight(const Weight& w, const char* op);
VkBufferObj& vk_buffer(Buffer& b, const char* op, const char* what);
const VkBufferObj& vk_buffer(const Buffer& b, const char* op, const char* what);

}  // namespace sbits::kernels::vk
