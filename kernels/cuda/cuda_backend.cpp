// CUDA backend setup: device choice, memory (weights, buffers, KV caches), reads and writes.
#include "kernels/cuda/cuda_backend.h"

#include <cstdlib>
#include <string_view>

#include "kernels/cuda/cuda_backend_impl.h"

namespace sbits::kernels {

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

std::unique_ptr<Backend> make_cuda_backend(int device) {
  const int count = cuda_device_count();
  if (device < 0 || device >= count)
    fail("cuda backend", "device ", device, " does not exist (this machine has ", count, " CUDA device",
         count == 1 ? "" : "s", ")");
  return std::make_unique<cuda::CudaBackend>(device);
}

CudaStats cuda_stats(const Backend& backend) {
  const auto* b = dynamic_cast<const cuda::CudaBackend*>(&backend);
  if (!b) fail("cuda_stats", "backend '", backend.name(), "' is not a CUDA backend");
  return b->stats();
}

}  // namespace sbits::kernels

namespace sbits::kernels::cuda {
namespace {

size_t dense_elem_bytes(WeightType t) { return t == WeightType::f32 ? 4 : 2; }

int env_int(const char* name, int fallback, int lo, int hi) {
  const char* e = std::getenv(name);
  if (!e || !*e) return fallback;
  char* end = nullptr;
  const long v = std::strtol(e, &end, 10);
  if (*end || v < lo || v > hi) fail("cuda backend", name, "='", e, "' is not an integer in [", lo, ", ", hi, "]");
  return int(v);
}

}  // namespace

const CudaWeight& cuda_weight(const Weight& w, const char* op) {
  const auto* c = dynamic_cast<const CudaWeight*>(&w);
  if (!c) fail(op, "the weight was not uploaded to the CUDA backend");
  return *c;
}

CudaBuffer& cuda_buffer(Buffer& b, const char* op, const char* what) {
  auto* c = dynamic_cast<CudaBuffer*>(&b);
  if (!c) fail(op, what, " is not a CUDA backend buffer");
  return *c;
}

const CudaBuffer& cuda_buffer(const Buffer& b, const char* op, const char* what) {
  const auto* c = dynamic_cast<const CudaBuffer*>(&b);
  if (!c) fail(op, what, " is not a CUDA backend buffer");
  return *c;
}

CudaBuffer::CudaBuffer(std::shared_ptr<DeviceState> st, size_t n) : DeviceResource(std::move(st)) {
  count = n;
  mem = DeviceMemory(checked_mul("alloc", int64_t(n), 4), "alloc");
  if (n) state->zero(mem.get(), n * sizeof(float));
  version = state->next_version++;
}

CudaBuffer::~CudaBuffer() {
  try {
    release_guard();
  } catch (...) {  // a destructor cannot report; the memory is freed regardless
  }
}

CudaWeight::~CudaWeight() {
  try {
    release_guard();
  } catch (...) {
  }
}

CudaKvCache::CudaKvCache(std::shared_ptr<DeviceState> st, const KvCacheDesc& d) : DeviceResource(std::move(st)) {
  const char* op = "create_kv_cache";
  if (d.n_layers <= 0 || d.n_slots <= 0 || d.n_ctx <= 0 || d.n_kv_heads <= 0 || d.head_dim <= 0)
    fail(op, "every size must be positive, got n_layers=", d.n_layers, " n_slots=", d.n_slots, " n_ctx=", d.n_ctx,
         " n_kv_heads=", d.n_kv_heads, " head_dim=", d.head_dim);
  if (d.type != KvType::f16 && d.type != KvType::f32) fail(op, "unsupported KV type ", uint32_t(d.type));
  if (d.head_dim > attention_max_head_dim())
    fail(op, "head_dim ", d.head_dim, " exceeds the CUDA attention's limit of ", attention_max_head_dim());
  desc = d;
  size_t elems = checked_mul(op, d.n_layers, d.n_slots);
  elems = checked_mul(op, int64_t(elems), d.n_kv_heads);
  elems = checked_mul(op, int64_t(elems), d.n_ctx);
  elems = checked_mul(op, int64_t(elems), d.head_dim);
  const size_t bytes = checked_mul(op, int64_t(elems), d.type == KvType::f16 ? 2 : 4);
  k = DeviceMemory(bytes, op);
  v = DeviceMemory(bytes, op);
  // Zeroed, like the CPU cache, so that nothing ever reads uninitialised memory.
  state->zero(k.get(), bytes);
  state->zero(v.get(), bytes);
  stored_end.assign(size_t(d.n_layers) * size_t(d.n_slots), 0);
}

CudaKvCache::~CudaKvCache() {
  try {
    release_guard();
  } catch (...) {
  }
}

CudaBackend::CudaBackend(int device) : st_(std::make_shared<DeviceState>(device)) {
  const cudaDeviceProp& p = st_->prop;
  description_ = std::string(p.name) + " (sm_" + std::to_string(p.major) + std::to_string(p.minor) + ", " +
                 std::to_string(p.multiProcessorCount) + " SMs, " +
                 std::to_string((p.totalGlobalMem + (1u << 29)) >> 30) + " GiB)";
  if (p.major < 8)
    fail("cuda backend", "device ", device, " (", p.name, ") is sm_", p.major, p.minor,
         "; the CUDA backend needs sm_80 or newer (tensor-core mma and cp.async)");
  // Tuning knobs for benchmarks (bench_cuda_matvec): which tiled kernel, how many warps per SM
  // to aim for, programmatic dependent launch, variant 4's ring size per warp. Variant 4 needs
  // sm_90 (bulk copies); the defaults were the fastest measured (bench/results/cuda_matvec_*).
  const int best = p.major >= 9 ? 5 : 2;
  mma_fallback_ = best;
  const char* forced = std::getenv("SBITS_CUDA_MMA_VARIANT");
  auto_dp4a_ = !forced || !*forced;
  mma_variant_ = env_int("SBITS_CUDA_MMA_VARIANT", best, 0, kTiledMmaVariants - 1);
  if (p.major < 9 && (mma_variant_ == 4 || mma_variant_ == 5))
    fail("cuda backend", "SBITS_CUDA_MMA_VARIANT=", mma_variant_, " needs sm_90 (bulk copies), this device is sm_",
         p.major, p.minor);
  dp4a_steps_ = env_int("SBITS_CUDA_DP4A_STEPS", 8, 2, 8);
  if (dp4a_steps_ != 2 && dp4a_steps_ != 4 && dp4a_steps_ != 8)
    fail("cuda backend", "SBITS_CUDA_DP4A_STEPS=", dp4a_steps_, " must be 2, 4 or 8");
  mma_ring_bytes_ = env_int("SBITS_CUDA_MMA_RING_BYTES", 12288, 2048, 65536);
  // One row of x: 12 (H200, device runs 84-85: 7B decode at 2.5 bpw 472 / 477 tok/s against
  // 451 / 445 at 20, the occupancy cap of the old default 32; 10-14 all within 3% of each
  // other; 4.0 bpw +3%, tech-llama-58m +3-4%): fewer, longer warps and fewer splits to add. More
  // rows keep 32 (bench_cuda_matvec, n = 8: neither wins everywhere).
  mma_warps_per_sm_ = env_int("SBITS_CUDA_MMA_WARPS_PER_SM", 32, 1, 64);
  mma_warps_per_sm_n1_ = env_int("SBITS_CUDA_MMA_WARPS_PER_SM", 12, 1, 64);
  st_->ctx.pdl = env_int("SBITS_CUDA_PDL", 1, 0, 1) != 0 && p.major >= 9;
  fuse_ = env_int("SBITS_CUDA_FUSE", 1, 0, 1) != 0;
  attn_chunk_ = env_int("SBITS_CUDA_ATTN_CHUNK", 8, 8, 256) / 8 * 8;
  attn_adaptive_ = env_int("SBITS_CUDA_ATTN_ADAPTIVE", 1, 0, 1) != 0;
  splitk_cluster_ = env_int("SBITS_CUDA_SPLITK_CLUSTER", 1, 0, 1) != 0 && p.major >= 9;
  norm_fold_ = env_int("SBITS_CUDA_NORM_FOLD", 1, 0, 1) != 0;
  swiglu_fold_ = env_int("SBITS_CUDA_SWIGLU_FOLD", 1, 0, 1) != 0;
  // Deferred ops (cuda_fuse.cpp) go out before any drain: a resource freed, scratch grown.
  st_->before_drain = [this] { flush_pending(); };
}

CudaStats CudaBackend::stats() const {
  std::lock_guard<std::recursive_mutex> lock(st_->mutex);
  CudaStats s = st_->queue->stats;
  s.device_bytes = DeviceMemory::live_bytes();
  return s;
}

std::unique_ptr<Weight> CudaBackend::upload(const HostWeight& w) {
  const char* op = "upload";
  std::lock_guard<std::recursive_mutex> lock(st_->mutex);
  flush_pending();
  CUDA_CHECK(cudaSetDevice(st_->device));
  if (w.type == WeightType::tiled) return upload_tiled(w);  // cuda_matmul.cpp
  if (w.type != WeightType::f32 && w.type != WeightType::f16 && w.type != WeightType::bf16)
    fail(op, "unsupported weight type ", uint32_t(w.type), " (the CUDA backend has f32, f16, bf16, tiled)");
  if (w.rows <= 0 || w.cols <= 0) fail(op, "rows and cols must be positive, got ", w.rows, " x ", w.cols);
  const size_t need = checked_mul(op, w.rows, int64_t(checked_mul(op, w.cols, int64_t(dense_elem_bytes(w.type)))));
  if (w.bytes < need)
    fail(op, "a ", w.rows, " x ", w.cols, " ", weight_type_name(w.type), " weight needs ", need, " bytes, got ",
         w.bytes);
  if (!w.data) fail(op, "data is null");
  auto out = std::make_unique<CudaWeight>(st_);
  out->type = w.type;
  out->rows = w.rows;
  out->cols = w.cols;
  out->mem = DeviceMemory(need, op);
  st_->copy_to_device(out->mem.get(), w.data, need);
  return out;
}

std::unique_ptr<Buffer> CudaBackend::alloc(size_t count) {
  std::lock_guard<std::recursive_mutex> lock(st_->mutex);
  flush_pending();
  CUDA_CHECK(cudaSetDevice(st_->device));
  return std::make_unique<CudaBuffer>(st_, count);
}

void CudaBackend::write(Buffer& dst, const float* src, size_t count, size_t offset) {
  const char* op = "write";
  std::lock_guard<std::recursive_mutex> lock(st_->mutex);
  flush_pending();
  CudaBuffer& d = cuda_buffer(dst, op, "dst");
  if (offset > d.count || count > d.count - offset)
    fail(op, "range [", offset, ", ", offset, " + ", count, ") exceeds the buffer's ", d.count, " floats");
  if (count == 0) return;
  if (!src) fail(op, "src is null");
  stamp(d);
  const size_t bytes = count * sizeof(float);
  if (bytes > st_->queue->max_stage()) {  // large writes (weights-sized) go straight over
    st_->drain();
    st_->copy_to_device(d.ptr() + offset, src, bytes);
    return;
  }
  st_->queue->begin_op(bytes);
  auto a = zeroed<CopyArgs>();
  a.src = st_->queue->stage(src, bytes);
  a.dst = d.ptr() + offset;
  a.bytes = int64_t(bytes);
  record(run<CopyArgs, launch_copy>, a);
}

void CudaBackend::read(const Buffer& src, float* dst, size_t count, size_t offset) {
  const char* op = "read";
  std::lock_guard<std::recursive_mutex> lock(st_->mutex);
  flush_pending();
  const CudaBuffer& s = cuda_buffer(src, op, "src");
  if (offset > s.count || count > s.count - offset)
    fail(op, "range [", offset, ", ", offset, " + ", count, ") exceeds the buffer's ", s.count, " floats");
  if (count == 0) return;
  if (!dst) fail(op, "dst is null");
  st_->copy_to_host(dst, s.ptr() + offset, count * sizeof(float));
}

std::unique_ptr<KvCache> CudaBackend::create_kv_cache(const KvCacheDesc& desc) {
  std::lock_guard<std::recursive_mutex> lock(st_->mutex);
  flush_pending();
  CUDA_CHECK(cudaSetDevice(st_->device));
  return std::make_unique<CudaKvCache>(st_, desc);
}

void CudaBackend::synchronize() {
  std::lock_guard<std::recursive_mutex> lock(st_->mutex);
  flush_pending();
  st_->drain();
}

}  // namespace sbits::kernels::cuda
