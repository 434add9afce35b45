// The CPU backend's classes, shared by the files that implement its ops (cpu_backend.cpp:
// memory and setup; cpu_ops.cpp: element-wise and row ops; cpu_matmul.cpp; cpu_attention.cpp).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/thread_pool.h"

namespace sbits::kernels::cpu {

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};

// A weight used in place: the bytes belong to the caller (usually an mmapped file).
class CpuWeight final : public Weight {
 public:
  const uint8_t* data = nullptr;
  size_t row_bytes = 0;
};

// f32 storage aligned to a cache line, so that rows whose width is a multiple of 16 floats
// never share a line between threads.
class CpuBuffer final : public Buffer {
 public:
  explicit CpuBuffer(size_t n);
  float* data() { return data_.get(); }
  const float* data() const { return data_.get(); }

 private:
  std::unique_ptr<float, FreeDeleter> data_;
};

// Layout: K and V are separate arrays [layer][slot][kv_head][pos][head_dim] of f16 or f32 (see
// cpu_backend.h). The memory comes from calloc, so unwritten positions read as zeros and a
// large cache costs nothing until it is touched.
class CpuKvCache final : public KvCache {
 public:
  explicit CpuKvCache(const KvCacheDesc& d);
  size_t bytes() const override { return 2 * array_bytes_; }

  size_t elem_bytes() const { return desc.type == KvType::f16 ? 2 : 4; }
  // Element offset of (layer, slot, kv_head, pos), head_dim elements follow.
  size_t offset(int layer, int slot, int kv_head, int pos) const {
    const size_t head = (size_t(layer) * size_t(desc.n_slots) + size_t(slot)) * size_t(desc.n_kv_heads) + size_t(kv_head);
    return (head * size_t(desc.n_ctx) + size_t(pos)) * size_t(desc.head_dim);
  }
  uint8_t* k() { return k_.get(); }
  uint8_t* v() { return v_.get(); }
  const uint8_t* k() const { return k_.get(); }
  const uint8_t* v() const { return v_.get(); }

  // 1 + the highest position stored per (layer, slot): attention refuses to read past it.
  int32_t& stored_end(int layer, int slot) { return stored_end_[size_t(layer) * size_t(desc.n_slots) + size_t(slot)]; }
  int32_t stored_end(int layer, int slot) const {
    return stored_end_[size_t(layer) * size_t(desc.n_slots) + size_t(slot)];
  }

 private:
  size_t array_bytes_ = 0;
  std::unique_ptr<uint8_t, FreeDeleter> k_, v_;
  std::vector<int32_t> stored_end_;
};

class CpuBackend final : public Backend {
 public:
  CpuBackend(int n_threads, const KernelTable& kernels);

  std::string name() const override { return "cpu"; }
  std::string device_description() const override { return description_; }

  std::unique_ptr<Weight> upload(const HostWeight& w) override;
  std::unique_ptr<Buffer> alloc(size_t count) override;
  void write(Buffer& dst, const float* src, size_t count, size_t offset) override;
  void read(const Buffer& src, float* dst, size_t count, size_t offset) override;
  std::unique_ptr<KvCache> create_kv_cache(const KvCacheDesc& desc) override;
  void synchronize() override {}

  void embed(const Weight& table, const int32_t* ids, int n, Buffer& out) override;
  void rmsnorm(const Buffer& x, const Weight& w, float eps, int n, Buffer& out) override;
  void matmul(const Weight& w, const Buffer& x, int n, Buffer& y, bool accumulate) override;
  void rope(Buffer& x, int n, int n_heads, int head_dim, const RowInfo* rows, float theta,
            RopeStyle style) override;
  void kv_store(KvCache& cache, int layer, const Buffer& k, const Buffer& v, int n, const RowInfo* rows) override;
  void attention(const Buffer& q, const KvCache& cache, int layer, int n, const RowInfo* rows,
                 const AttentionShape& shape, Buffer& out) override;
  void swiglu(const Buffer& gate, const Buffer& up, size_t count, Buffer& out) override;
  void add(Buffer& x, const Buffer& y, size_t count) override;
  void get_rows(const Buffer& x, const int32_t* src_rows, int n, int width, Buffer& out) override;

 private:
  // Runs f(begin, end, thread) over [0, total) in chunks of `grain` handed out dynamically (an
  // atomic counter on its own cache line), so a thread slowed by a neighbour process takes
  // fewer chunks. Runs inline when there is only one chunk.
  template <class F>
  void parallel_for(int64_t total, int64_t grain, F&& f) {
    if (total <= 0) return;
    grain = std::max<int64_t>(grain, 1);
    if (total <= grain || pool_.size() == 1) {
      f(int64_t(0), total, 0);
      return;
    }
    struct alignas(64) Counter {
      std::atomic<int64_t> next{0};
    } counter;
    pool_.run([&](int thread) {
      for (;;) {
        const int64_t b = counter.next.fetch_add(grain, std::memory_order_relaxed);
        if (b >= total) return;
        f(b, std::min(total, b + grain), thread);
      }
    });
  }

  // Tiled mixed-bitwidth weights (cpu_tiled.cpp); called with arguments already checked.
  std::unique_ptr<Weight> upload_tiled(const HostWeight& w);
  void matmul_tiled(const Weight& w, const CpuBuffer& x, int n, CpuBuffer& y, bool accumulate);
  void embed_tiled(const Weight& table, const int32_t* ids, int n, CpuBuffer& out);

  // Per-thread scratch of at least n floats; padded to its own cache lines.
  float* scratch(int thread, size_t n);

  const KernelTable& kernels_;
  ThreadPool pool_;
  std::string description_;
  struct alignas(64) Scratch {
    std::vector<float> data;
  };
  std::vector<Scratch> scratch_;
  std::vector<float> norm_weight_;  // rmsnorm's weight as f32
  std::vector<double> rope_freq_;
  std::vector<float> packed_x_;  // matmul's x reordered for the AVX2 bf16 decode tiles
  std::mutex op_mutex_;  // ops are serialized (see cpu_backend.h)
};

// The backend's own object behind an interface reference, or a KernelError naming the op.
const CpuWeight& cpu_weight(const Weight& w, const char* op);
CpuBuffer& cpu_buffer(Buffer& b, const char* op, const char* what);
const CpuBuffer& cpu_buffer(const Buffer& b, const char* op, const char* what);

}  // namespace sbits::kernels::cpu
