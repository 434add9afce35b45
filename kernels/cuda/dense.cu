// Matmuls that are not the tensor-core tiled kernel: dense f32/f16/bf16 matvec for up to 8 rows
// (one warp per output row, 16-byte loads, f32 math like the CPU), cuBLAS for more rows
// (prefill), and the generic tiled matvec for tile shapes the tensor-core kernel does not take.
#include <type_traits>

#include "kernels/cuda/device_util.cuh"

namespace sbits::kernels::cuda {
namespace {

constexpr int kRowsPerBlock = 8;  // one warp each

template <class T>
__device__ __forceinline__ float to_f32(T v) {
  if constexpr (sizeof(T) == 4) return v;
  else if constexpr (std::is_same_v<T, __half>) return __half2float(v);
  else return __bfloat162float(v);
}

// V elements per load: 16 bytes when the rows allow it (cols % V == 0), else 1.
template <class T, int V>
__global__ void __launch_bounds__(kRowsPerBlock * 32) dense_matvec_kernel(const DenseMatvecArgs a) {
  const int lane = threadIdx.x & 31;
  const int64_t row = int64_t(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5);
  if (row >= a.rows) return;
  const T* w = static_cast<const T*>(a.w) + row * a.cols;
  float acc[kMatvecMaxRows];
#pragma unroll
  for (int j = 0; j < kMatvecMaxRows; ++j) acc[j] = 0.0f;
  for (int64_t c = int64_t(lane) * V; c < a.cols; c += 32 * V) {
    alignas(16) T wv[V];
    if constexpr (V > 1) {
      *reinterpret_cast<uint4*>(wv) = __ldg(reinterpret_cast<const uint4*>(w + c));
    } else {
      wv[0] = w[c];
    }
#pragma unroll
    for (int j = 0; j < kMatvecMaxRows; ++j) {
      if (j >= a.n) break;
      const float* x = a.x + j * a.cols + c;
#pragma unroll
      for (int e = 0; e < V; ++e) acc[j] = fmaf(to_f32(wv[e]), x[e], acc[j]);
    }
  }
#pragma unroll
  for (int j = 0; j < kMatvecMaxRows; ++j) {
    if (j >= a.n) break;
    const float s = warp_sum(acc[j]);
    if (lane == 0) {
      float* y = a.y + j * a.rows + row;
      *y = a.accumulate ? *y + s : s;
    }
  }
}

template <class T>
void launch_dense(const DenseMatvecArgs& a, const ExecContext& c) {
  constexpr int kVec = 16 / sizeof(T);
  const unsigned blocks = unsigned((a.rows + kRowsPerBlock - 1) / kRowsPerBlock);
  if (a.cols % kVec == 0)
    dense_matvec_kernel<T, kVec><<<blocks, kRowsPerBlock * 32, 0, c.stream>>>(a);
  else
    dense_matvec_kernel<T, 1><<<blocks, kRowsPerBlock * 32, 0, c.stream>>>(a);
  CUDA_CHECK_LAUNCH();
}

// One block per output row; the block walks the row's tiles, its threads the columns of each.
__global__ void __launch_bounds__(128) tiled_generic_kernel(const TiledGenericArgs a) {
  __shared__ float part[kMatvecMaxRows][4];
  const int64_t o = blockIdx.x;
  const quant::TiledDesc d = to_desc(a.t);
  const int64_t tr = o / d.tile_rows;
  const int r = int(o - tr * d.tile_rows);
  float acc[kMatvecMaxRows];
#pragma unroll
  for (int j = 0; j < kMatvecMaxRows; ++j) acc[j] = 0.0f;
  for (int64_t tc = 0; tc < d.tiles_c; ++tc) {
    const quant::TileView v = quant::tile_view(d, tr, tc);
    for (int c = threadIdx.x; c < v.cols; c += blockDim.x) {
      const float w = tile_value(v, r, c);
#pragma unroll
      for (int j = 0; j < kMatvecMaxRows; ++j)
        if (j < a.n) acc[j] = fmaf(w, a.x[j * d.cols + tc * d.tile_cols + c], acc[j]);
    }
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int j = 0; j < kMatvecMaxRows; ++j) {
    const float s = warp_sum(acc[j]);
    if (lane == 0) part[j][warp] = s;
  }
  __syncthreads();
  if (threadIdx.x < a.n) {
    const int j = threadIdx.x;
    const float s = (part[j][0] + part[j][1]) + (part[j][2] + part[j][3]);
    float* y = a.y + j * d.rows + o;
    *y = a.accumulate ? *y + s : s;
  }
}

}  // namespace

void launch_dense_matvec(const DenseMatvecArgs& a, const ExecContext& c) {
  if (a.n == 0) return;
  switch (WeightType(a.type)) {
    case WeightType::f32: launch_dense<float>(a, c); return;
    case WeightType::f16: launch_dense<__half>(a, c); return;
    case WeightType::bf16: launch_dense<__nv_bfloat16>(a, c); return;
    default: fail("matmul", "dense matvec of weight type ", a.type);
  }
}

// Row-major y[n][ldy] = x[n][k] W^T is, column-major, y^T (rows x n) = W (as k x rows, read
// transposed) times x^T (k x n).
void launch_gemm(const GemmArgs& a, const ExecContext& c) {
  if (a.n == 0) return;
  const float alpha = 1.0f, beta = a.accumulate ? 1.0f : 0.0f;
  const int m = int(a.rows), n = int(a.n), k = int(a.cols);
  if (a.type == int64_t(WeightType::f32)) {
    CUBLAS_CHECK(cublasSgemm(c.cublas, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, static_cast<const float*>(a.w),
                             int(a.ldw), static_cast<const float*>(a.x), int(a.ldx), &beta, a.y, int(a.ldy)));
    return;
  }
  const cudaDataType_t t = a.type == int64_t(WeightType::bf16) ? CUDA_R_16BF : CUDA_R_16F;
  CUBLAS_CHECK(cublasGemmEx(c.cublas, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, a.w, t, int(a.ldw), a.x, t,
                            int(a.ldx), &beta, a.y, CUDA_R_32F, int(a.ldy), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

void launch_tiled_generic(const TiledGenericArgs& a, const ExecContext& c) {
  if (a.n == 0) return;
  tiled_generic_kernel<<<unsigned(a.t.rows), 128, 0, c.stream>>>(a);
  CUDA_CHECK_LAUNCH();
}

}  // namespace sbits::kernels::cuda
