// The per-ISA kernel table: the inner loops that differ between the scalar and the AVX2 paths.
// Everything else (argument checks, threading, blocking decisions) is shared and lives in the
// backend; one table is chosen when the backend is created.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/backend.h"
#include "kernels/cpu/cpu_backend.h"

namespace sbits::kernels::cpu {

// Rows of x up to which matmul takes the decode path: each weight row is streamed once and
// dotted with all n rows while in registers. Larger n takes the prefill path (see
// matmul_driver.h). 8 rows x 1 weight row still fits the 16 AVX2 registers.
constexpr int kDecodeMaxRows = 8;

// y[r, o] (+)= dot(x[r, :], W[o, :]) for all r < n and o in [o_begin, o_end).
struct MatmulArgs {
  WeightType type = WeightType::f32;
  const uint8_t* w = nullptr;  // row 0 of W, any alignment
  size_t w_row_bytes = 0;
  int64_t k = 0;               // columns of W and x
  const float* x = nullptr;    // [n, k], packed by pack_pairs16 for bf16 decode if the table asks
  int n = 0;
  float* y = nullptr;          // [n, ldy]
  int64_t ldy = 0;
  bool accumulate = false;
};

// x as the AVX2 bf16 decode tiles read it: each full block of 16 floats of a row is stored as
// its 8 even-indexed then its 8 odd-indexed elements; the tail (k % 16) is left in order.
// Loading 16 bf16 weights as one 256-bit vector, a 16-bit left shift of each 32-bit lane gives
// the even-indexed weights as f32 and a mask of the high halves gives the odd ones: one cheap
// op per 8 weights instead of a widening move plus a shift. x is packed once per call.
inline void pack_pairs16(const float* x, int n, int64_t k, float* out) {
  for (int r = 0; r < n; ++r) {
    const float* src = x + r * k;
    float* dst = out + r * k;
    int64_t c = 0;
    for (; c + 16 <= k; c += 16)
      for (int i = 0; i < 8; ++i) dst[c + i] = src[c + 2 * i], dst[c + 8 + i] = src[c + 2 * i + 1];
    for (; c < k; ++c) dst[c] = src[c];
  }
}

// Floats of per-thread scratch that matmul_rows needs for a given k.
inline size_t matmul_scratch_floats(int64_t k) { return size_t(4 * k); }

// One (row, head) of attention: out = softmax(scale * K q) V over n_pos positions.
struct AttentionHead {
  const float* q = nullptr;  // [head_dim]
  const void* k = nullptr;   // [n_pos, head_dim] of kv_type
  const void* v = nullptr;   // [n_pos, head_dim] of kv_type
  int64_t n_pos = 0;
  int head_dim = 0;
  float scale = 1.0f;
  KvType kv_type = KvType::f16;
  float* out = nullptr;      // [head_dim]; may alias q
  float* scratch = nullptr;  // [attention_scratch_floats(head_dim)]
};

inline size_t attention_scratch_floats(int head_dim) { return size_t(2 * head_dim); }

struct KernelTable {
  CpuIsa isa = CpuIsa::scalar;
  bool bf16_decode_packed_x = false;  // matmul_rows wants x packed by pack_pairs16 for bf16, n <= 8
  void (*matmul_rows)(const MatmulArgs& a, int64_t o_begin, int64_t o_end, float* scratch) = nullptr;
  void (*convert_to_f32)(WeightType type, const void* src, float* dst, size_t n) = nullptr;
  void (*f32_to_f16)(const float* src, uint16_t* dst, size_t n) = nullptr;
  void (*attention_head)(const AttentionHead& h) = nullptr;
  // out[i] = silu(gate[i]) * up[i]; out may alias gate or up.
  void (*swiglu)(const float* gate, const float* up, float* out, size_t n) = nullptr;
};

const KernelTable& scalar_kernels();
// nullptr when the AVX2 kernels are not compiled in (non-x86 builds).
const KernelTable* avx2_kernels();

}  // namespace sbits::kernels::cpu
