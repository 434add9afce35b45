// CPU backend setup: ISA choice, the thread pool, memory (weights, buffers, KV caches).
#include "kernels/cpu/cpu_backend.h"

#include <cmath>
#include <cstring>
#include <fstream>
#include <string_view>

#include "kernels/op_checks.h"
#include "kernels/cpu/cpu_backend_impl.h"

namespace sbits::kernels {

// The op interface is header-only; its one out-of-line helper lives with the backend that is
// always built.
const char* weight_type_name(WeightType t) {
  switch (t) {
    case WeightType::f32: return "f32";
    case WeightType::f16: return "f16";
    case WeightType::bf16: return "bf16";
    case WeightType::tiled: return "tiled";
  }
  return "unknown";
}

const char* cpu_isa_name(CpuIsa isa) { return isa == CpuIsa::avx2 ? "avx2+fma+f16c" : "scalar"; }

bool cpu_supports_avx2() {
#if defined(__x86_64__) || defined(__i386__)
  // libgcc's checks include the OS saving the ymm registers (XGETBV), not just CPUID.
  __builtin_cpu_init();
  return cpu::avx2_kernels() != nullptr && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("f16c");
#else
  return false;
#endif
}

CpuIsa cpu_default_isa() {
  const char* env = std::getenv("SBITS_CPU_ISA");
  const std::string_view v = env ? env : "";
  if (v.empty() || v == "auto") return cpu_supports_avx2() ? CpuIsa::avx2 : CpuIsa::scalar;
  if (v == "scalar") return CpuIsa::scalar;
  if (v == "avx2") {
    if (!cpu_supports_avx2())
      fail("cpu backend", "SBITS_CPU_ISA=avx2 but this CPU lacks AVX2, FMA or F16C (use scalar or auto)");
    return CpuIsa::avx2;
  }
  fail("cpu backend", "SBITS_CPU_ISA='", v, "' is not one of: auto, scalar, avx2");
}

std::unique_ptr<Backend> make_cpu_backend(int n_threads) {
  CpuBackendOptions options;
  options.n_threads = n_threads;
  return make_cpu_backend(options);
}

std::unique_ptr<Backend> make_cpu_backend(const CpuBackendOptions& options) {
  constexpr int kMaxThreads = 4096;
  if (options.n_threads < 0 || options.n_threads > kMaxThreads)
    fail("cpu backend", "n_threads must be in [0, ", kMaxThreads, "] (0 = all cores), got ", options.n_threads);
  const CpuIsa isa = options.isa ? *options.isa : cpu_default_isa();
  if (isa == CpuIsa::avx2 && !cpu_supports_avx2())
    fail("cpu backend", "the avx2 kernels were requested but this CPU lacks AVX2, FMA or F16C");
  const cpu::KernelTable& table = isa == CpuIsa::avx2 ? *cpu::avx2_kernels() : cpu::scalar_kernels();
  const int threads = options.n_threads == 0 ? cpu::available_cpus() : options.n_threads;
  return std::make_unique<cpu::CpuBackend>(threads, table);
}

void cpu_convert_to_f32(WeightType type, const void* src, float* dst, size_t n, CpuIsa isa) {
  if (type != WeightType::f32 && type != WeightType::f16 && type != WeightType::bf16)
    fail("cpu_convert_to_f32", "unsupported weight type ", uint32_t(type));
  if (isa == CpuIsa::avx2 && !cpu_supports_avx2()) fail("cpu_convert_to_f32", "this CPU lacks AVX2");
  const auto& k = isa == CpuIsa::avx2 ? *cpu::avx2_kernels() : cpu::scalar_kernels();
  k.convert_to_f32(type, src, dst, n);
}

void cpu_convert_f32_to_f16(const float* src, uint16_t* dst, size_t n, CpuIsa isa) {
  if (isa == CpuIsa::avx2 && !cpu_supports_avx2()) fail("cpu_convert_f32_to_f16", "this CPU lacks AVX2");
  const auto& k = isa == CpuIsa::avx2 ? *cpu::avx2_kernels() : cpu::scalar_kernels();
  k.f32_to_f16(src, dst, n);
}

}  // namespace sbits::kernels

namespace sbits::kernels::cpu {
namespace {

std::string cpu_model_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) != 0) continue;
    const size_t colon = line.find(':');
    if (colon == std::string::npos) break;
    const size_t b = line.find_first_not_of(" \t", colon + 1);
    return b == std::string::npos ? std::string("unknown CPU") : line.substr(b);
  }
  return "unknown CPU";
}

size_t weight_elem_bytes(WeightType t) { return t == WeightType::f32 ? 4 : 2; }

// Zeroed, cache-line aligned memory of at least `bytes` (rounded up to a whole line).
void* alloc_zeroed(const char* op, size_t bytes) {
  const size_t rounded = (bytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
  if (!p) fail(op, "out of memory allocating ", bytes, " bytes");
  std::memset(p, 0, rounded == 0 ? 64 : rounded);
  return p;
}

}  // namespace

const CpuWeight& cpu_weight(const Weight& w, const char* op) {
  const auto* c = dynamic_cast<const CpuWeight*>(&w);
  if (!c) fail(op, "the weight was not uploaded to the CPU backend");
  return *c;
}

CpuBuffer& cpu_buffer(Buffer& b, const char* op, const char* what) {
  auto* c = dynamic_cast<CpuBuffer*>(&b);
  if (!c) fail(op, what, " is not a CPU backend buffer");
  return *c;
}

const CpuBuffer& cpu_buffer(const Buffer& b, const char* op, const char* what) {
  const auto* c = dynamic_cast<const CpuBuffer*>(&b);
  if (!c) fail(op, what, " is not a CPU backend buffer");
  return *c;
}

CpuBuffer::CpuBuffer(size_t n) {
  count = n;
  data_.reset(static_cast<float*>(alloc_zeroed("alloc", checked_mul("alloc", int64_t(n), 4))));
}

CpuKvCache::CpuKvCache(const KvCacheDesc& d) {
  const char* op = "create_kv_cache";
  if (d.n_layers <= 0 || d.n_slots <= 0 || d.n_ctx <= 0 || d.n_kv_heads <= 0 || d.head_dim <= 0)
    fail(op, "every size must be positive, got n_layers=", d.n_layers, " n_slots=", d.n_slots, " n_ctx=", d.n_ctx,
         " n_kv_heads=", d.n_kv_heads, " head_dim=", d.head_dim);
  if (d.type != KvType::f16 && d.type != KvType::f32) fail(op, "unsupported KV type ", uint32_t(d.type));
  desc = d;
  size_t elems = checked_mul(op, d.n_layers, d.n_slots);
  elems = checked_mul(op, int64_t(elems), d.n_kv_heads);
  elems = checked_mul(op, int64_t(elems), d.n_ctx);
  elems = checked_mul(op, int64_t(elems), d.head_dim);
  array_bytes_ = checked_mul(op, int64_t(elems), int64_t(elem_bytes()));
  // calloc: the pages are zeroed lazily by the OS, so an unused part of a big cache is free.
  k_.reset(static_cast<uint8_t*>(std::calloc(array_bytes_, 1)));
  v_.reset(static_cast<uint8_t*>(std::calloc(array_bytes_, 1)));
  if (!k_ || !v_) fail(op, "out of memory allocating 2 x ", array_bytes_, " bytes");
  stored_end_.assign(size_t(d.n_layers) * size_t(d.n_slots), 0);
}

CpuBackend::CpuBackend(int n_threads, const KernelTable& kernels)
    : kernels_(kernels), pool_(n_threads), scratch_(size_t(pool_.size())) {
  description_ = cpu_model_name() + " (" + std::to_string(pool_.size()) + " thread" +
                 (pool_.size() == 1 ? "" : "s") + ", " + cpu_isa_name(kernels_.isa) + ")";
}

float* CpuBackend::scratch(int thread, size_t n) {
  std::vector<float>& s = scratch_[size_t(thread)].data;
  if (s.size() < n) s.resize(n);
  return s.data();
}

std::unique_ptr<Weight> CpuBackend::upload(const HostWeight& w) {
  const char* op = "upload";
  if (w.type == WeightType::tiled) return upload_tiled(w);  // cpu_tiled.cpp
  if (w.type != WeightType::f32 && w.type != WeightType::f16 && w.type != WeightType::bf16)
    fail(op, "unsupported weight type ", uint32_t(w.type), " (the CPU backend has f32, f16, bf16)");
  if (w.rows <= 0 || w.cols <= 0) fail(op, "rows and cols must be positive, got ", w.rows, " x ", w.cols);
  const size_t row_bytes = checked_mul(op, w.cols, int64_t(weight_elem_bytes(w.type)));
  const size_t need = checked_mul(op, w.rows, int64_t(row_bytes));
  if (w.bytes < need)
    fail(op, "a ", w.rows, " x ", w.cols, " ", weight_type_name(w.type), " weight needs ", need, " bytes, got ",
         w.bytes);
  if (!w.data) fail(op, "data is null");
  auto out = std::make_unique<CpuWeight>();
  out->type = w.type;
  out->rows = w.rows;
  out->cols = w.cols;
  out->data = static_cast<const uint8_t*>(w.data);
  out->row_bytes = row_bytes;
  return out;
}

std::unique_ptr<Buffer> CpuBackend::alloc(size_t count) { return std::make_unique<CpuBuffer>(count); }

void CpuBackend::write(Buffer& dst, const float* src, size_t count, size_t offset) {
  CpuBuffer& d = cpu_buffer(dst, "write", "dst");
  if (offset > d.count || count > d.count - offset)
    fail("write", "range [", offset, ", ", offset, " + ", count, ") exceeds the buffer's ", d.count, " floats");
  if (count == 0) return;
  if (!src) fail("write", "src is null");
  std::memcpy(d.data() + offset, src, count * sizeof(float));
}

void CpuBackend::read(const Buffer& src, float* dst, size_t count, size_t offset) {
  const CpuBuffer& s = cpu_buffer(src, "read", "src");
  if (offset > s.count || count > s.count - offset)
    fail("read", "range [", offset, ", ", offset, " + ", count, ") exceeds the buffer's ", s.count, " floats");
  if (count == 0) return;
  if (!dst) fail("read", "dst is null");
  std::memcpy(dst, s.data() + offset, count * sizeof(float));
}

std::unique_ptr<KvCache> CpuBackend::create_kv_cache(const KvCacheDesc& desc) {
  return std::make_unique<CpuKvCache>(desc);
}

}  // namespace sbits::kernels::cpu
