// The matmul loop nest, shared by every ISA; only the register tiles differ.
//
// An ISA supplies
//   template <WeightType T, int RW, int NX> static void Isa::tile(w, ldw, x, ldx, y, ldy, k, acc)
//     y[j * ldy + i] (+)= dot(W row i, x row j) for i < RW, j < NX, W rows of type T,
//     ldw bytes apart, x rows ldx floats apart; RW * NX accumulators live in registers.
//   static void Isa::convert(WeightType, const void* src, float* dst, size_t n)
//
// Decode (n <= kDecodeMaxRows): one pass over the weight rows, each tile converting RW weight
// rows in registers and dotting them with all n rows of x. Weight bytes are read once, so the
// speed is the memory bandwidth. RW is chosen so RW * n accumulators + RW weight vectors + one
// x vector fit the 16 vector registers.
//
// Prefill (n > kDecodeMaxRows): x is cut into blocks that fit L2; for each block, groups of 4
// weight rows are converted to f32 once (into L1-resident scratch) and multiplied with the
// whole block by 4x3 tiles (12 accumulators, 7 loads per 12 FMAs), so the loop is bound by
// FMA throughput rather than by conversion or memory.
#pragma once

#include <algorithm>
#include <array>
#include <utility>

#include "kernels/cpu/cpu_kernels.h"

namespace sbits::kernels::cpu {

using TileFn = void (*)(const uint8_t* w, size_t ldw, const float* x, int64_t ldx, float* y, int64_t ldy,
                        int64_t k, bool accumulate);

constexpr int kTileMaxRows = 4;  // weight rows per tile
constexpr int kPrefillTileX = 3;  // x rows per prefill tile
// Floats of x per prefill block: 192 KiB, half of a typical per-core L2, leaving room for the
// weight scratch and the outputs.
constexpr int64_t kPrefillBlockFloats = 48 * 1024;

// Weight rows per decode tile for n rows of x (see above).
constexpr int decode_tile_rows(int n) { return n <= 3 ? 4 : n <= 6 ? 2 : 1; }

template <class Isa, WeightType T>
struct TileGrid {
  template <size_t... I>
  static constexpr std::array<TileFn, sizeof...(I)> make(std::index_sequence<I...>) {
    return {&Isa::template tile<T, int(I / kDecodeMaxRows) + 1, int(I % kDecodeMaxRows) + 1>...};
  }
  // table[(rw - 1) * kDecodeMaxRows + (nx - 1)]
  static constexpr auto table = make(std::make_index_sequence<kTileMaxRows * kDecodeMaxRows>());
  static TileFn get(int rw, int nx) { return table[size_t((rw - 1) * kDecodeMaxRows + (nx - 1))]; }
};

template <class Isa, WeightType T>
void matmul_decode(const MatmulArgs& a, int64_t o_begin, int64_t o_end) {
  const int rw = decode_tile_rows(a.n);
  const TileFn wide = TileGrid<Isa, T>::get(rw, a.n);
  const TileFn one = TileGrid<Isa, T>::get(1, a.n);
  int64_t o = o_begin;
  for (; o + rw <= o_end; o += rw) wide(a.w + o * a.w_row_bytes, a.w_row_bytes, a.x, a.k, a.y + o, a.ldy, a.k, a.accumulate);
  for (; o < o_end; ++o) one(a.w + o * a.w_row_bytes, a.w_row_bytes, a.x, a.k, a.y + o, a.ldy, a.k, a.accumulate);
}

// Multiplies `rw` weight rows (already f32, ldw bytes apart) with x rows [j_begin, j_end).
template <class Isa>
void prefill_group(const uint8_t* w, size_t ldw, int rw, const MatmulArgs& a, int64_t o, int64_t j_begin,
                   int64_t j_end) {
  for (int64_t j = j_begin; j < j_end; j += kPrefillTileX) {
    const int nx = int(std::min<int64_t>(kPrefillTileX, j_end - j));
    TileGrid<Isa, WeightType::f32>::get(rw, nx)(w, ldw, a.x + j * a.k, a.k, a.y + j * a.ldy + o, a.ldy, a.k,
                                                a.accumulate);
  }
}

template <class Isa, WeightType T>
void matmul_prefill(const MatmulArgs& a, int64_t o_begin, int64_t o_end, float* scratch) {
  const int64_t block = std::max<int64_t>(kPrefillTileX, kPrefillBlockFloats / std::max<int64_t>(a.k, 1));
  for (int64_t j0 = 0; j0 < a.n; j0 += block) {
    const int64_t j1 = std::min<int64_t>(a.n, j0 + block);
    for (int64_t o = o_begin; o < o_end; o += kTileMaxRows) {
      const int rw = int(std::min<int64_t>(kTileMaxRows, o_end - o));
      const uint8_t* w = a.w + o * a.w_row_bytes;
      size_t ldw = a.w_row_bytes;
      if constexpr (T != WeightType::f32) {
        for (int i = 0; i < rw; ++i) Isa::convert(T, w + i * a.w_row_bytes, scratch + i * a.k, size_t(a.k));
        w = reinterpret_cast<const uint8_t*>(scratch);
        ldw = size_t(a.k) * sizeof(float);
      }
      prefill_group<Isa>(w, ldw, rw, a, o, j0, j1);
    }
  }
}

template <class Isa, WeightType T>
void matmul_rows_typed(const MatmulArgs& a, int64_t o_begin, int64_t o_end, float* scratch) {
  if (a.n <= kDecodeMaxRows) {
    matmul_decode<Isa, T>(a, o_begin, o_end);
  } else {
    matmul_prefill<Isa, T>(a, o_begin, o_end, scratch);
  }
}

// The KernelTable::matmul_rows entry point of an ISA.
template <class Isa>
void matmul_rows(const MatmulArgs& a, int64_t o_begin, int64_t o_end, float* scratch) {
  if (a.n <= 0 || o_begin >= o_end) return;
  switch (a.type) {
    case WeightType::f32: return matmul_rows_typed<Isa, WeightType::f32>(a, o_begin, o_end, scratch);
    case WeightType::f16: return matmul_rows_typed<Isa, WeightType::f16>(a, o_begin, o_end, scratch);
    case WeightType::bf16: return matmul_rows_typed<Isa, WeightType::bf16>(a, o_begin, o_end, scratch);
    case WeightType::tiled: return;  // never dense rows: cpu_tiled.cpp decodes tiles
  }
}

}  // namespace sbits::kernels::cpu
