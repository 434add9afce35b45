#version 450
// Prefill on matrix units (VK_NV_cooperative_matrix; the backend creates this pipeline only where
// Context::coopmat): Y[j, o0 + o] (=|+=) sum_i X[j, i] W[o, i] for n > 8 rows, W a block of
// tiled rows dequantized to f16 (tiled.comp MODE 2; row stride ldw halves), X f32 rounded to f16
// here (saturating at +-65504, as the CUDA backend's prefill), products summed in f32.
//
// A workgroup of 8 subgroups of 32 takes 128 outputs x 64 rows of x, 64 columns of i per step,
// staged in shared memory as f16; subgroup s computes rows 32 (s / 4) .. + 31 x outputs
// 32 (s % 4) .. + 31 as 2 x 2 products of 16 x 16 x 16. Its results go through shared memory to
// Y, so edge blocks (rows past n, outputs past `rows`) and accumulation need no special case.
// The host takes this path only when cols % 32 == 0 and ldw % 8 == 0 (whole 16-byte loads, no
// partial column step). The next step's columns are loaded into registers while this step
// multiplies. H200, per GEMM of an 8192 x 4096 block by 512 rows: 64 x 64 blocks of 4 subgroups
// 650 us, 128 x 64 blocks 420 us (x, staged from f32 by every workgroup, is read once per 128
// outputs instead of 64; runs 68-71); 64 columns per step staged as uvec4 groups that the
// cooperative loads read as halves 913 us (run 69); the next step's loads in registers 315 us,
// and with 64 columns per step 240 us (runs 122-123).
#extension GL_NV_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_EXT_control_flow_attributes : require
layout(local_size_x = 256) in;
layout(binding = 0) readonly buffer BW { uvec4 W8[]; };  // 8 halves per element
layout(binding = 1) readonly buffer BX { vec4 X4[]; };
layout(binding = 2) buffer BY { float Y[]; };
layout(push_constant) uniform P { uint n, rows, cols, ldw, o0, ldy, accumulate; } p;

const uint BM = 128, BN = 64, BK = 64;
// Row strides: 72 halves (144 bytes) keep the staged rows 16-byte aligned, as the cooperative
// loads want, and stagger them across banks. The results go out half a block (32 rows of x) at a
// time through unpadded rows of 128 floats, so that all three arrays fit the 48 KB of shared
// memory a workgroup may have (27 + 16 KB).
const uint LDH = BK + 8, LDC = BM;
shared float16_t ws[BM * LDH];
shared float16_t xs[BN * LDH];
shared float cs[(BN / 2) * LDC];

#define MAT16 fcoopmatNV<16, gl_ScopeSubgroup, 16, 16>
#define MAT32 fcoopmatNV<32, gl_ScopeSubgroup, 16, 16>

// Columns k0 .. k0 + 63 of the block's W rows and x rows (zeros past the matrices' rows and
// columns; cols % 32 == 0, so a group of 8 halves or 4 floats is all in or all out): 1024
// groups of 8 halves of W and 1024 vec4 of x per step, 4 of each per invocation. Loaded into
// registers one step ahead (load_step), so that the next step's global loads are in flight
// while this step multiplies, then converted into shared memory (stage_step).
struct Step {
  uvec4 w[4];
  vec4 x[4];
};

Step load_step(uint t, uint ob, uint jb, uint k0) {
  Step st;
  [[unroll]] for (uint i = 0; i < 4u; ++i) {
    const uint e = t + 256u * i, r = e / 8u, c = k0 + (e % 8u) * 8u;
    st.w[i] = ob + r < p.rows && c < p.cols ? W8[((ob + r) * p.ldw + c) / 8u] : uvec4(0u);
  }
  [[unroll]] for (uint i = 0; i < 4u; ++i) {
    const uint e = t + 256u * i, r = e / 16u, c = k0 + (e % 16u) * 4u;
    st.x[i] = jb + r < p.n && c < p.cols ? X4[((jb + r) * p.cols + c) / 4u] : vec4(0.0);
  }
  return st;
}

void stage_step(uint t, Step st) {
  [[unroll]] for (uint i = 0; i < 4u; ++i) {
    const uint e = t + 256u * i, r = e / 8u, c = (e % 8u) * 8u;
    [[unroll]] for (uint h = 0; h < 4u; ++h) {
      const f16vec2 v = unpackFloat2x16(st.w[i][h]);
      ws[r * LDH + c + 2u * h] = v.x;
      ws[r * LDH + c + 2u * h + 1u] = v.y;
    }
  }
  [[unroll]] for (uint i = 0; i < 4u; ++i) {
    const uint e = t + 256u * i, r = e / 16u, c = (e % 16u) * 4u;
    const vec4 x = clamp(st.x[i], -65504.0, 65504.0);
    [[unroll]] for (uint h = 0; h < 4u; ++h) xs[r * LDH + c + h] = float16_t(x[h]);
  }
}

void main() {
  const uint t = gl_LocalInvocationIndex, s = t / 32u;
  const uint ob = gl_WorkGroupID.x * BM, jb = gl_WorkGroupID.y * BN;
  const uint js = (s / 4u) * 32u, os = (s % 4u) * 32u;  // the subgroup's eighth of the block
  MAT32 acc[2][2];
  [[unroll]] for (uint a = 0; a < 2u; ++a)
    [[unroll]] for (uint b = 0; b < 2u; ++b) acc[a][b] = MAT32(0.0);
  Step next = load_step(t, ob, jb, 0u);
  for (uint k0 = 0; k0 < p.cols; k0 += BK) {
    barrier();  // the previous step's loads from shared memory are done
    stage_step(t, next);
    barrier();
    if (k0 + BK < p.cols) next = load_step(t, ob, jb, k0 + BK);
    [[unroll]] for (uint kk = 0; kk < BK; kk += 16u) {
      MAT16 xa[2], wb[2];
      // x rows as A (16 rows x 16 columns of i, row-major); W rows as B = W^T (16 of i x 16
      // outputs): element (i, o) at o * LDH + i, i.e. column-major.
      [[unroll]] for (uint a = 0; a < 2u; ++a) coopMatLoadNV(xa[a], xs, (js + 16u * a) * LDH + kk, LDH, false);
      [[unroll]] for (uint b = 0; b < 2u; ++b) coopMatLoadNV(wb[b], ws, (os + 16u * b) * LDH + kk, LDH, true);
      [[unroll]] for (uint a = 0; a < 2u; ++a)
        [[unroll]] for (uint b = 0; b < 2u; ++b) acc[a][b] = coopMatMulAddNV(xa[a], wb[b], acc[a][b]);
    }
  }
  // Subgroups 0-3 hold rows 0-31 of the block, 4-7 rows 32-63: one half at a time.
  for (uint half_ = 0; half_ < 2u; ++half_) {
    barrier();  // the multiplications' (then the previous half's) reads of shared memory are done
    if (s / 4u == half_)
      [[unroll]] for (uint a = 0; a < 2u; ++a)
        [[unroll]] for (uint b = 0; b < 2u; ++b)
          coopMatStoreNV(acc[a][b], cs, 16u * a * LDC + os + 16u * b, LDC, false);
    barrier();
    for (uint e = t; e < BM * BN / 2u; e += 256u) {
      const uint j = jb + 32u * half_ + e / BM, o = ob + e % BM;
      if (j < p.n && o < p.rows) {
        const uint yi = j * p.ldy + p.o0 + o;
        Y[yi] = (p.accumulate != 0u ? Y[yi] : 0.0) + cs[(e / BM) * LDC + e % BM];
      }
    }
  }
}
