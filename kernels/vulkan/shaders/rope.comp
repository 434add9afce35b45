#version 450
// Rotary embedding in place. The host computes cos and sin of pos * theta^(-2i/hd) in double
// (as the CPU backend does) and stages them per row: CS[(r * half + i) * 2 + {0, 1}]. One
// invocation per (row, head, pair). Pairs: neox (i, i + hd/2), interleaved (2i, 2i + 1).
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
layout(local_size_x = 256) in;
layout(binding = 0) buffer BX { float X[]; };
layout(binding = 1) readonly buffer BC { float CS[]; };
layout(push_constant) uniform P { uint n, n_heads, head_dim, interleaved; } p;

void main() {
  const uint half_ = p.head_dim / 2;
  const uint id = flat_index();
  if (id >= p.n * p.n_heads * half_) return;
  const uint i = id % half_, h = (id / half_) % p.n_heads, r = id / (half_ * p.n_heads);
  const uint base = (r * p.n_heads + h) * p.head_dim;
  const uint ia = base + (p.interleaved != 0 ? 2 * i : i);
  const uint ib = ia + (p.interleaved != 0 ? 1 : half_);
  const float c = CS[(r * half_ + i) * 2], s = CS[(r * half_ + i) * 2 + 1];
  const float a0 = X[ia], b0 = X[ib];
  X[ia] = a0 * c - b0 * s;
  X[ib] = a0 * s + b0 * c;
}
