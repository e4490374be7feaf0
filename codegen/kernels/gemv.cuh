//===- codegen/kernels/gemv.cuh - The matrix-vector core of the matmul ops -===//
//
// Not an op: the warp-level dot products that matmul, matmul_add,
// matmul_swiglu, matmul_qkv, matmul_qkv_rope_kv and matmul_argmax share.
//
// Batch-1 decode is a matrix-vector product, bound by reading W once. Design:
//   - one warp computes whole rows (R rows at once when an op needs several
//     dot products with the same x: SwiGLU's W1 and W3 rows, RoPE's row pairs);
//   - W is read with 16-byte loads (4 floats or 8 halves), consecutive lanes
//     reading consecutive 16 bytes, kUnroll loads per row in flight per lane
//     before the first use;
//   - x is read as float4 from global memory: it is small (K floats) and stays
//     in L1/L2, shared by all warps of the SM;
//   - the partial sums meet through a warp shuffle reduction.
// The vector path needs every row start 16-byte aligned, which holds when
// K * sizeof(T) is a multiple of 16 (and W's base is aligned). Otherwise, for
// awkward sizes such as K = 250, the scalar path reads one element per lane.
//
// Launch shape: kGemvThreads threads (kGemvWarps warps) per block, one warp
// task per warp, so gemv(tasks) blocks of 256 threads.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "common.cuh"

namespace llamac {
namespace launch {

[[maybe_unused]] constexpr int kGemvThreads = 256;
[[maybe_unused]] constexpr int kGemvWarps = kGemvThreads / kWarpSize;

/// Blocks for `warpTasks` tasks of one warp each (rows, or row pairs).
LLAMAC_HOST_DEVICE constexpr Shape gemv(unsigned warpTasks) {
  return {ceilDiv(warpTasks, kGemvWarps), 1, kGemvThreads, 0};
}

} // namespace launch

#if LLAMAC_DEVICE_CODE
namespace detail {

/// 16-byte loads each lane issues per row before using the first.
[[maybe_unused]] constexpr int kGemvUnroll = 8;

/// The warp task this warp works on (a row, or a row pair).
__device__ __forceinline__ int gemvWarpTask() {
  return blockIdx.x * launch::kGemvWarps + threadIdx.x / kWarpSize;
}

/// Prefetches the rows of W this block's warps will read (one row per warp,
/// kGemvWarps consecutive rows per block), before the dependency wait.
template <int N, int K, typename T>
__device__ __forceinline__ void prefetchBlockRows(const T *w) {
  const int first = blockIdx.x * launch::kGemvWarps;
  const int rows = first + launch::kGemvWarps <= N ? launch::kGemvWarps : N - first;
  if (rows > 0)
    prefetchL2<launch::kGemvThreads>(w + (size_t)first * K, (size_t)rows * K * sizeof(T));
}

/// 1 / sqrt(mean(x^2) + eps), computed by one warp on its own (no block
/// barrier, so warps never wait for one another).
template <int K> __device__ __forceinline__ float warpRmsInverse(const float *x, float eps) {
  float ss = 0.0f;
  for (int k = threadIdx.x % kWarpSize; k < K; k += kWarpSize)
    ss = fmaf(x[k], x[k], ss);
  ss = warpSum(ss);
  return 1.0f / sqrtf(ss / (float)K + eps);
}

/// Waits for the kernel that wrote x, then returns x's RMS scale (1 without
/// the prologue).
template <int K, bool RmsPrologue> __device__ __forceinline__ float inputScaleAfterWait(const float *x, float eps) {
  waitForPreviousKernel();
  if constexpr (RmsPrologue)
    return warpRmsInverse<K>(x, eps);
  else
    return 1.0f;
}

/// dots[r] = sum_k (x[k] * s) * rows[r][k], for R rows of K elements, where
/// s = warpRmsInverse(x) with the RMS prologue, else 1. The whole warp calls
/// it; every lane gets the sums.
///
/// The first kGemvUnroll loads of every row are issued before
/// waitForPreviousKernel(): weights do not depend on earlier kernels, so
/// their latency overlaps the previous kernel's tail. Only then is x (which
/// the previous kernel wrote) read. Warps that call this need no other wait.
template <int K, typename T, int R, bool RmsPrologue>
__device__ __forceinline__ void warpDots(const float *__restrict__ x, float eps, const T *const (&rows)[R],
                                         float (&dots)[R]) {
  const int lane = threadIdx.x % kWarpSize;
  float acc[R];
#pragma unroll
  for (int r = 0; r < R; ++r)
    acc[r] = 0.0f;
  float xScale = 1.0f;

  if constexpr ((K * sizeof(T)) % 16 == 0) {
    constexpr int kElems = Vec16<T>::kElems;
    constexpr int kVecs = K / kElems;
    for (int base = 0; base < kVecs; base += kWarpSize * kGemvUnroll) {
      uint4 raw[kGemvUnroll][R];
#pragma unroll
      for (int u = 0; u < kGemvUnroll; ++u) {
        const int v = base + u * kWarpSize + lane;
        if (v < kVecs) {
#pragma unroll
          for (int r = 0; r < R; ++r)
            raw[u][r] = load16(rows[r] + (size_t)v * kElems);
        }
      }
      if (base == 0)
        xScale = inputScaleAfterWait<K, RmsPrologue>(x, eps);
#pragma unroll
      for (int u = 0; u < kGemvUnroll; ++u) {
        const int v = base + u * kWarpSize + lane;
        if (v < kVecs) {
          float xs[kElems];
#pragma unroll
          for (int e = 0; e < kElems; e += 4) {
            const float4 x4 = loadFloat4(x + (size_t)v * kElems + e);
            xs[e] = x4.x * xScale;
            xs[e + 1] = x4.y * xScale;
            xs[e + 2] = x4.z * xScale;
            xs[e + 3] = x4.w * xScale;
          }
#pragma unroll
          for (int r = 0; r < R; ++r) {
            float w[kElems];
            widen(raw[u][r], w, T());
#pragma unroll
            for (int e = 0; e < kElems; ++e)
              acc[r] = fmaf(xs[e], w[e], acc[r]);
          }
        }
      }
    }
  } else {
    for (int base = 0; base < K; base += kWarpSize * kGemvUnroll) {
      T w[kGemvUnroll][R];
#pragma unroll
      for (int u = 0; u < kGemvUnroll; ++u) {
        const int k = base + u * kWarpSize + lane;
        if (k < K) {
#pragma unroll
          for (int r = 0; r < R; ++r)
            w[u][r] = rows[r][k];
        }
      }
      if (base == 0)
        xScale = inputScaleAfterWait<K, RmsPrologue>(x, eps);
#pragma unroll
      for (int u = 0; u < kGemvUnroll; ++u) {
        const int k = base + u * kWarpSize + lane;
        if (k < K) {
          const float xs = x[k] * xScale;
#pragma unroll
          for (int r = 0; r < R; ++r)
            acc[r] = fmaf(xs, toFloat(w[u][r]), acc[r]);
        }
      }
    }
  }

#pragma unroll
  for (int r = 0; r < R; ++r)
    dots[r] = warpSum(acc[r]);
}

} // namespace detail
#endif // LLAMAC_DEVICE_CODE

} // namespace llamac
