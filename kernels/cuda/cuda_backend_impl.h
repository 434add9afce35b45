// The CUDA backend's classes, shared by the files that implement its ops (cuda_backend.cpp:
// setup and memory; cuda_ops.cpp: row and element-wise ops, KV cache, attention;
// cuda_matmul.cpp: matmul on every weight type).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "kernels/cuda/device_state.h"
#include "kernels/cuda/launch.h"

namespace sbits::kernels::cuda {

// Every resource keeps the device state alive and drains the recorded ops before its memory
// goes, since they may still use it.
class DeviceResource {
 public:
  explicit DeviceResource(std::shared_ptr<DeviceState> st) : state(std::move(st)) {}
  void release_guard() {
    if (state) state->drain();
  }
  std::shared_ptr<DeviceState> state;
};

class CudaBuffer final : public Buffer, public DeviceResource {
 public:
  CudaBuffer(std::shared_ptr<DeviceState> st, size_t n);
  ~CudaBuffer() override;
  float* ptr() const { return mem.as<float>(); }

  DeviceMemory mem;
  // Stamp of the last recorded op that wrote the buffer: matmuls reuse an f16 copy of x while
  // the stamp is unchanged (q, k and v read the same normalised x).
  uint64_t version = 0;
};

class CudaWeight final : public Weight, public DeviceResource {
 public:
  explicit CudaWeight(std::shared_ptr<DeviceState> st) : DeviceResource(std::move(st)) {}
  ~CudaWeight() override;

  DeviceMemory mem;    // dense elements, or the tiled tensor bytes
  DeviceMemory table;  // tiled: bits then offsets
  TiledDev tiled{};    // tiled: device description
  bool mma_ok = false;  // tiled: the tensor-core kernels take this layout (see cuda_matmul.cpp)
  int64_t slot_bytes = 0;  // tiled: variant 4's ring slot (cuda_matmul.cpp upload_tiled)
  bool f16_tiles = false;  // tiled: some tiles kept in f16 (they read x's f16 copy)
};

class CudaKvCache final : public KvCache, public DeviceResource {
 public:
  CudaKvCache(std::shared_ptr<DeviceState> st, const KvCacheDesc& d);
  ~CudaKvCache() override;
  size_t bytes() const override { return k.bytes() + v.bytes(); }

  DeviceMemory k, v;
  // 1 + the highest position stored per (layer, slot), tracked on the host when kv_store is
  // recorded: attention refuses to read past it.
  std::vector<int32_t> stored_end;
  int32_t& end(int layer, int slot) { return stored_end[size_t(layer) * size_t(desc.n_slots) + size_t(slot)]; }
};

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device);
  ~CudaBackend() override;

  std::string name() const override { return "cuda"; }
  int preferred_prefill_rows() const override { return 512; }
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
  // On the device (topk.cu); the same results as the host default.
  void top_k(const Buffer& logits, int n, int width, int k, int32_t* ids, float* vals) override;

  CudaStats stats() const;

 private:
  std::unique_ptr<Weight> upload_tiled(const HostWeight& w);
  // kv_store's checks; the arguments without the staged rows.
  KvStoreArgs kv_store_args(const char* op, CudaKvCache& c, int layer, const Buffer& k, const Buffer& v, int n,
                            const RowInfo* rows);
  // Begins attention's op (rows staged) with the arguments both of its kernels take.
  AttentionArgs attention_args(const CudaBuffer& q, CudaKvCache& c, int layer, int n, const RowInfo* rows,
                               const AttentionShape& shape, CudaBuffer& out);
  void matmul_dense(const CudaWeight& w, const CudaBuffer& x, int n, CudaBuffer& y, bool accumulate);
  void matmul_tiled(const CudaWeight& w, const CudaBuffer& x, int n, CudaBuffer& y, bool accumulate);
  // An f16 (or bf16) copy of x's first n rows, ld columns (zero beyond cols), with per-128-column
  // sums when `sums` and variant 6's digits of row 0 when `xq`; reused while x is unchanged.
  const uint16_t* half_x(const CudaBuffer& x, int n, int64_t cols, int64_t ld, bool bf16, bool sums,
                         bool xq = false);
  // Variant 6's x scratch for ld columns (launch.h ConvertXArgs::xq); may drain to grow.
  std::pair<uint8_t*, float*> xq_scratch(int64_t ld);
  // The RMSNorm fold's digits of h (apart from xq_scratch, which the producer reads meanwhile)
  // and its sums of squares (cuda_fuse.cpp).
  std::pair<uint8_t*, float*> fold_scratch(int64_t ld);
  std::pair<uint8_t*, float*> swiglu_scratch(int64_t ld);
  double* fold_sums(int64_t ld);
  // The tiled kernel variant for a matvec of n rows on t (tiled_mma_* and tiled_dp4a).
  int64_t tiled_variant(const TiledDev& t, int n) const;
  // Whether a matvec of n rows on tiled weights of `cols` columns (64-row tiles) takes variant 6.
  bool dp4a_by_default(int64_t cols, int n) const;
  // Split-K and ring depth of a variant-4/5 launch over block_rows 64-row blocks (or the
  // variant's blocks) of tiles_c tile columns; partial_ld is the partials' row stride.
  void tiled_split(int64_t slot_bytes, int64_t tiles_c, int64_t block_rows, int64_t partial_ld, int n,
                   TiledMmaArgs& a);

  // Deferred ops (cuda_fuse.cpp): decode matmuls on tiled weights that read the same x (q, k,
  // v; gate, up) wait to go out as one grouped launch, and an rmsnorm or swiglu waits to be
  // fused with the conversion of the next matmul's x. Every op, read, write and synchronize
  // flushes them first, and so does every drain of the device state (DeviceState::before_drain:
  // resource destruction, scratch growth), so the order of effects is the caller's.
  struct PendingMatmul {
    const CudaWeight* w;
    CudaBuffer* y;
    bool accumulate;
  };
  enum class PendingElem { none, rmsnorm, swiglu };
  struct Pending {
    const CudaBuffer* x = nullptr;  // the matmuls' x
    int n = 0, count = 0;
    PendingMatmul mm[kTiledMmaMaxGroup] = {};
    PendingElem elem = PendingElem::none;
    RmsnormArgs rms{};
    SwigluArgs swi{};
    const CudaBuffer* elem_out = nullptr;
    // An elementwise op of the matmuls' output came after them - an rmsnorm of a single
    // accumulating matmul's y, or swiglu of a gate / up pair's - a fold candidate (cuda_fuse.cpp),
    // decided when the next matmul comes. elem, if any, came before the matmuls.
    PendingElem after = PendingElem::none;
    RmsnormArgs after_rms{};
    SwigluArgs after_swi{};
    const CudaBuffer* after_out = nullptr;
    // The matmuls consume a fold: their x is the digits the producer wrote (the rmsnorm fold's,
    // with results scaled by 1 / rms of `fold`; or the swiglu fold's).
    PendingElem consumer_of = PendingElem::none;
    RmsnormArgs fold{};
  };
  bool fusing() const { return fuse_ && mma_variant_ >= 4; }
  bool deferrable(const CudaWeight& w, int n) const;
  void defer_matmul(const CudaWeight& w, const CudaBuffer& x, int n, CudaBuffer& y, bool accumulate);
  void flush_pending();
  void record_elem(const Pending& p, int64_t ld, bool xq);  // ld > 0: fused with x's conversion
  void record_group(const Pending& p, const Pending* fold_from = nullptr);
  bool norm_fold_candidate(const CudaBuffer& x, const CudaBuffer& out, const CudaWeight& w, int n) const;
  bool swiglu_fold_candidate(const CudaBuffer& gate, const CudaBuffer& up, size_t count) const;
  bool fold_consumer_ok(const CudaWeight& w, const CudaBuffer& x, int n) const;
  void record_group_alone(Pending p);

  template <class A>
  void record(void (*run_fn)(const void*, const ExecContext&), const A& args) {
    st_->queue->push(run_fn, args);
  }
  void stamp(CudaBuffer& b) { b.version = st_->next_version++; }

  std::shared_ptr<DeviceState> st_;
  std::string description_;
  int mma_variant_ = 1;
  int mma_fallback_ = 1;  // for the launches variant 6 does not take (n > 1, other layouts)
  // No variant forced: n = 1 matvecs of at least kDp4aMinCols columns take variant 6.
  bool auto_dp4a_ = true;
  int dp4a_steps_ = 8;  // variant 6: rows per lane per tile (SBITS_CUDA_DP4A_STEPS)
  int dp4a_blocks_per_sm_ = 0;  // variant 6's occupancy, asked once
  int mma_warps_per_sm_ = 8;
  int mma_warps_per_sm_n1_ = 8;  // the same for matvecs of one row (decode)
  int64_t mma_ring_bytes_ = 12288;  // variant 4: shared memory per warp to aim for
  std::map<int64_t, int> wide_blocks_per_sm_;  // variant 4: blocks per SM by shared memory
  int64_t attn_chunk_ = 8;  // decode attention: positions per split at least (SBITS_CUDA_ATTN_CHUNK)
  bool attn_adaptive_ = true;  // ... and more as the context grows (SBITS_CUDA_ATTN_ADAPTIVE)
  bool fuse_ = true;  // SBITS_CUDA_FUSE=0 turns deferral and fusion off (benchmarks' baseline)
  // Variant 6 adds its splits within a thread-block cluster (SBITS_CUDA_SPLITK_CLUSTER; sm_90)
  bool splitk_cluster_ = true;
  bool norm_fold_ = true;  // the RMSNorm fold between variant-6 matvecs (SBITS_CUDA_NORM_FOLD)
  bool swiglu_fold_ = true;  // the swiglu fold into gate / up (SBITS_CUDA_SWIGLU_FOLD)
  Pending pending_;

  struct HalfX {
    const CudaBuffer* buffer = nullptr;
    uint64_t version = 0;
    int n = 0;
    int64_t cols = 0, ld = 0;
    bool bf16 = false, sums = false, xq = false;
    const void* data = nullptr;  // where the copy is (scratch may move when it grows)
  } half_x_;
};

// The backend's own objects behind interface references, or a KernelError naming the op.
const CudaWeight& cuda_weight(const Weight& w, const char* op);
CudaBuffer& cuda_buffer(Buffer& b, const char* op, const char* what);
const CudaBuffer& cuda_buffer(const Buffer& b, const char* op, const char* what);

}  // namespace sbits::kernels::cuda
