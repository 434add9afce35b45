// The CPU backend: a portable scalar path plus an AVX2+FMA+F16C path chosen at run time.
//
// Ownership: weights are used in place; the HostWeight bytes (typically an mmapped .sbits file)
// must outlive the Weight returned by upload(). Buffers and KV caches own their memory.
//
// Threading: every op runs synchronously on a persistent pool of n_threads threads (the calling
// thread is one of them), so synchronize() has nothing to wait for. One Backend may be called
// from several threads; its ops are serialized.
//
// Failure: invalid arguments (sizes, ids, slots, positions, foreign buffers) throw KernelError
// naming the op and the expected and found values, before anything is written.
//
// KV cache layout (per cache; K and V are two separate arrays of the same shape):
//   [layer][slot][kv_head][pos][head_dim], elements f16 (default) or f32.
// One (layer, slot, kv_head) is a contiguous [n_ctx][head_dim] block, so attention streams the
// keys and values of one head linearly, which is what the hardware prefetcher wants.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>

#include "kernels/backend.h"

namespace sbits::kernels {

// Instruction sets the CPU backend has kernels for.
enum class CpuIsa : uint32_t {
  scalar = 0,  // portable C++, any CPU
  avx2 = 1,    // AVX2 + FMA + F16C (x86-64 since Haswell / Zen)
};

const char* cpu_isa_name(CpuIsa isa);

// True when this CPU and OS can run the avx2 kernels (always false off x86).
bool cpu_supports_avx2();

// The ISA a backend uses when none is requested: SBITS_CPU_ISA=scalar|avx2|auto from the
// environment, "auto" (the default) meaning the best this CPU supports. Throws KernelError for
// an unknown value or for avx2 on a CPU without it.
CpuIsa cpu_default_isa();

struct CpuBackendOptions {
  int n_threads = 0;          // 0 = every core this process may run on
  std::optional<CpuIsa> isa;  // unset = cpu_default_isa()
};

// Throws KernelError when n_threads < 0 or the requested ISA is not supported by this CPU.
std::unique_ptr<Backend> make_cpu_backend(int n_threads = 0);
std::unique_ptr<Backend> make_cpu_backend(const CpuBackendOptions& options);

// The element conversions the kernels use, exposed for exhaustive tests and tools.
// Converts n elements of `type` at src (any alignment) to f32.
void cpu_convert_to_f32(WeightType type, const void* src, float* dst, size_t n, CpuIsa isa);
// f32 -> IEEE binary16, round to nearest even; overflow gives inf, NaN stays a quiet NaN.
void cpu_convert_f32_to_f16(const float* src, uint16_t* dst, size_t n, CpuIsa isa);

}  // namespace sbits::kernels
