// The conversions of x every matvec variant reads, shared by the kernels that produce x
// (elementwise.cu's convert_x and its fused forms, attention.cu for wo's x): the f16 copy and
// variant 6's int8 digits.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/cuda/device_util.cuh"

namespace sbits::kernels::cuda {

// Variant 6's x (tiled_dp4a.cu): the 32 columns c of one warp (lane = c % 32, one pack unit u of
// tile column t) as x ~ d (hi + lo / 256), int8 digits, d = max |x| / 127 over the unit. The
// digits go to the byte each code class's dp4a reads (tiled_dp4a.cu's top comment), for each
// plane width P: code i of the unit is code idx = i % n of word k = i / n (n = 32 / P), in
// class (idx % (n / 2)) / 2 at byte 2 (idx % 2) + (idx >= n / 2). {d / 256, sum x} per unit.
__device__ __forceinline__ void xq_store(uint8_t* xq, float* meta, int64_t c, float v) {
  const int lane = int(c % 32), u = int((c / 32) % 4);
  const int64_t t = c / 128;
  const float amax = warp_max(fabsf(v)), sum = warp_sum(v);
  int hi = 0, lo = 0;
  if (amax > 0.0f) {
    const float s = v * (127.0f / amax);
    hi = __float2int_rn(s);
    lo = min(max(__float2int_rn((s - float(hi)) * 256.0f), -127), 127);
  }
  uint8_t* base = xq + t * kXqTileBytes + u * 64;
  static_for<4>([&](auto I) {
    constexpr int P = 1 << I.value, n = 32 / P, h = n / 2;
    const int k = lane / n, idx = lane % n;
    const int e = k * (8 / P) + (idx % h) / 2, b = 2 * (idx % 2) + (idx >= h ? 1 : 0);
    uint8_t* p = base + I.value * 256 + e * 4 + b;
    p[0] = uint8_t(int8_t(hi));
    p[32] = uint8_t(int8_t(lo));
  });
  if (lane == 0) {
    meta[t * kXqMetaFloats + 2 * u] = amax / (127.0f * 256.0f);
    meta[t * kXqMetaFloats + 2 * u + 1] = sum;
  }
}

// f16 of v, saturating at +-65504 rather than becoming inf (activations that large would
// already be far outside what the models see): every conversion of x to f16.
__device__ __forceinline__ __half half_saturated(float v) { return __float2half_rn(fminf(fmaxf(v, -65504.0f), 65504.0f)); }

// Column c of x as the matvecs read it: the f16 value at out[c] (out null: not stored) and, with
// xq, variant 6's digits of that same f16 value (every lane of the warp calls it then: xq_store's
// reductions). Returns the f16 value as a float, what the per-tile sums add.
__device__ __forceinline__ float store_converted(__half* out, uint8_t* xq, float* meta, int64_t c, float v) {
  const __half h = half_saturated(v);
  if (out) out[c] = h;
  const float rounded = __half2float(h);
  if (xq) xq_store(xq, meta, c, rounded);
  return rounded;
}

}  // namespace sbits::kernels::cuda
