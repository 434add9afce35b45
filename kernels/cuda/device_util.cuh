// Small device helpers shared by the CUDA kernels: compile-time loops, bit casts, element
// conversions, warp reductions and the tiled weights' reference dequantization.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <utility>

#include "kernels/cuda/launch.h"
#include "kernels/quant/tiled.h"

namespace sbits::kernels::cuda {

// Programmatic dependent launch (sm_90; no-ops before it and when the kernel was launched
// without the attribute). A kernel launched by launch_pdl may start while the previous kernel
// in the stream is still running: pdl_enter() waits until that kernel has finished and its
// writes are visible, and lets the next kernel be scheduled once every block of this one runs.
// Each kernel calls it before touching memory, so the launch overhead of consecutive ops
// overlaps with the previous op instead of following it.
__device__ __forceinline__ void wait_prior_grid() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void allow_next_grid() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}
__device__ __forceinline__ void pdl_enter() {
  wait_prior_grid();
  allow_next_grid();
}

// pdl_enter() for a kernel whose parameters are `args`, which are read first. Kernel parameters
// live in a constant bank that is cold on every multiprocessor at each launch, and each first use
// of a line of it stalls the warp on an immediate-constant-cache miss: half of a one-row
// rmsnorm_convert's 7.7 us (ncu, H200, device run 62). Reading one word of every 32 bytes before
// the wait takes those misses while the previous kernel still runs. (The empty asm statements
// are ordered before the wait's, so the loads cannot sink past it.)
template <class Args>
__device__ __forceinline__ void pdl_enter(const Args& args) {
  static_assert(sizeof(Args) % 4 == 0, "kernel arguments are whole words");
  const uint32_t* words = reinterpret_cast<const uint32_t*>(&args);
#pragma unroll
  for (int i = 0; i < int(sizeof(Args) / 4); i += 8) asm volatile("" ::"r"(words[i]));
  pdl_enter();
}

// With cluster_y > 1, blocks (x, y) with equal x and y / cluster_y form a thread-block cluster.
template <class... P, class... A>
void launch_pdl_cluster(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, const ExecContext& c,
                        unsigned cluster_y, A&&... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = c.stream;
  cudaLaunchAttribute attr[2];
  int n = 0;
  if (c.pdl) {
    attr[n].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[n++].val.programmaticStreamSerializationAllowed = 1;
  }
  if (cluster_y > 1) {
    attr[n].id = cudaLaunchAttributeClusterDimension;
    attr[n++].val.clusterDim = {1u, cluster_y, 1u};
  }
  cfg.attrs = attr;
  cfg.numAttrs = unsigned(n);
  CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, std::forward<A>(args)...));
}
template <class... P, class... A>
void launch_pdl(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, const ExecContext& c, A&&... args) {
  launch_pdl_cluster(kernel, grid, block, smem, c, 1u, std::forward<A>(args)...);
}

template <int V>
struct Int {
  static constexpr int value = V;
};

// f(Int<0>{}), ..., f(Int<N-1>{}): indices are compile-time, so register arrays indexed by
// them stay in registers (a run-time index can push an array to local memory).
template <int N, int I = 0, class F>
__device__ __forceinline__ void static_for(F&& f) {
  if constexpr (I < N) {
    f(Int<I>{});
    static_for<N, I + 1>(f);
  }
}

__device__ __forceinline__ __half2 as_half2(uint32_t u) {
  __half2 h;
  memcpy(&h, &u, 4);
  return h;
}
__device__ __forceinline__ uint32_t as_u32(__half2 h) {
  uint32_t u;
  memcpy(&u, &h, 4);
  return u;
}

// Element `i` of a dense weight row of type t (WeightType f32, f16 or bf16) as f32, exactly.
__device__ __forceinline__ float load_weight(const void* w, int64_t type, int64_t i) {
  if (type == int64_t(WeightType::f32)) return static_cast<const float*>(w)[i];
  const uint16_t h = static_cast<const uint16_t*>(w)[i];
  if (type == int64_t(WeightType::f16)) return quant::half_to_float(h);
  return __uint_as_float(uint32_t(h) << 16);  // bf16 is the top half of an f32
}

// silu(g) u as the CPU computes it: sigmoid from e = exp(-|g|) <= 1, so nothing overflows.
__device__ __forceinline__ float silu_times(float g, float u) {
  const float e = expf(-fabsf(g));
  const float sig = g >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
  return (sig == 0.0f ? -0.0f : g * sig) * u;
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// The device description of a tiled weight, as the shared quant helpers expect it.
__device__ __forceinline__ quant::TiledDesc to_desc(const TiledDev& t) {
  quant::TiledDesc d;
  d.rows = t.rows;
  d.cols = t.cols;
  d.tile_rows = int32_t(t.tile_rows);
  d.tile_cols = int32_t(t.tile_cols);
  d.group = int32_t(t.group);
  d.tiles_r = t.tiles_r;
  d.tiles_c = t.tiles_c;
  d.bits = t.bits;
  d.offsets = t.offsets;
  d.data = t.data;
  return d;
}

// Column c of row r of one tile: quant::dequantize_tile_row's value (w = fmaf(q, scale, min)).
__device__ inline float tile_value(const quant::TileView& v, int r, int c) {
  if (v.bits == quant::kKeepF16Bits) return quant::half_to_float(v.f16[size_t(r) * size_t(v.units) * 32 + c]);
  float w = 0.0f;
  quant::dispatch_codec(v.bits, [&](auto codec) {
    using Codec = decltype(codec);
    const int u = c / quant::kUnitCodes;
    const uint16_t* sm = v.scales + (size_t(r) * size_t(v.groups) + size_t(u / v.group_units)) * 2;
    const uint32_t q =
        Codec::get(quant::unit_plane0<Codec>(v, r, u), quant::unit_plane1<Codec>(v, r, u), c % quant::kUnitCodes);
    w = fmaf(float(q), quant::half_to_float(sm[0]), quant::half_to_float(sm[1]));
  });
  return w;
}

}  // namespace sbits::kernels::cuda
