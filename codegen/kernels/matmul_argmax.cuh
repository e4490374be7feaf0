//===- codegen/kernels/matmul_argmax.cuh - the classifier fused with argmax -===//
//
// Op:     %t = matmul_argmax %x, @W [rms prologue]   x: [K] f32, W: [N][K] of T -> t: i32
// Math:   t = argmax_n sum_k (x[k] * s) * W[n][k]   (s as in matmul.cuh; argmax
//         as in argmax.cuh: lowest index on ties). The logits never reach memory.
// Launch: two kernels, deterministic, with no state to reset between steps:
//   1. matmul_argmax<N, K, T, Rms, Split>: launch::matmulArgmax(N, K,
//      sizeof(T), Split), ceil(N * Split / 8) blocks of 256 threads, Split
//      warps per row, for short rows at most kMatmulArgmaxMaxBlocks (past it
//      each warp group takes every (blocks * 8 / Split)-th row from its
//      first); block b writes the packed key of its best row to
//      partialKeys[b].
//   2. argmax_keys<P, Threads>: launch::argmaxKeys(Threads), 1 block of 1024
//      threads (256 in the persistent kernel), reduces the
//      P = launch::matmulArgmaxPartials(N, K, sizeof(T), Split) keys to the
//      token.
//   Scratch: P 8-byte keys.
// Bytes:  N*K*sizeof(T) + K*4 + 8*P*2. stories110M wcls (32000x768 f32): 98 MB,
//         33 us at 3 TB/s, the largest single read of a step.
//
// Wrappers the code generator emits:
//   // %40 = matmul_argmax %39, @wcls : tensor<i32>
//   extern "C" __global__ void __launch_bounds__(256)
//   k40_matmul_argmax(const float* x, const float* w, unsigned long long* keys) {
//     llamac::matmul_argmax<32000 /*N*/, 768 /*K*/, float, true /*rms prologue*/, 1 /*split*/>(x, w, keys, 1e-5f);
//   }
//   extern "C" __global__ void __launch_bounds__(1024)
//   k40_argmax_keys(const unsigned long long* keys, int* token) {
//     llamac::argmax_keys<2048 /*partial keys*/>(keys, token);
//   }
//
//===----------------------------------------------------------------------===//
#pragma once

#include "argmax.cuh"
#include "gemv.cuh"

namespace llamac {
namespace launch {

/// The most blocks of a classifier whose rows are each at most one batch of
/// kGemvUnroll loads per lane: beyond it each warp takes several rows in
/// turn (gemvTasks), so that fewer blocks start and end, and fewer keys
/// reach the second stage. Measured side by side on the H100 against one row
/// per warp (bench/NOTES.md, session 11), stories110M's 32000 rows: 4,000
/// blocks 49.5% (f16) and 74.5% (f32) of the floor; 2,048 blocks 49.8-50.1%
/// and 75.2-75.3%; 1,024 49.8-49.9% and 74.8-75.0%; 528 49.7% and
/// 74.8-75.0%. Llama-3.2-1B bf16 (16,032 blocks, 8 loads per lane) stays at
/// 84.5-84.7% with 4,096 or 2,048. Longer rows (Llama-3-8B's, 16 loads per
/// lane) keep one per warp: capped, 8B measured 94.2% in one call, uncapped
/// 94.7% in another on another machine, never side by side.
[[maybe_unused]] constexpr unsigned kMatmulArgmaxMaxBlocks = 2048;

/// Every block leaves a key of its own: the whole grid runs. `k` elements of
/// `elementBytes` bytes per row.
LLAMAC_HOST_DEVICE constexpr Shape matmulArgmax(unsigned n, unsigned k, unsigned elementBytes, unsigned split) {
  const unsigned blocks = gemv(n, split).gridX;
  const bool capped = ceilDiv(gemvRowLoads(k, elementBytes), kWarpSize * split) <= unsigned(kGemvUnroll) &&
                      blocks > kMatmulArgmaxMaxBlocks;
  return {capped ? kMatmulArgmaxMaxBlocks : blocks, 1, launch::kGemvThreads, 0, false};
}
LLAMAC_HOST_DEVICE constexpr unsigned matmulArgmaxPartials(unsigned n, unsigned k, unsigned elementBytes,
                                                           unsigned split) {
  return matmulArgmax(n, k, elementBytes, split).gridX;
}
LLAMAC_HOST_DEVICE constexpr Shape argmaxKeys(unsigned threads) { return {1, 1, threads, 0}; }

} // namespace launch

#if LLAMAC_DEVICE_CODE
template <int N, int K, typename T, bool RmsPrologue, int Split>
__device__ __forceinline__ void matmul_argmax(const float *x, const T *__restrict__ w,
                                              unsigned long long *__restrict__ partialKeys,
                                              float eps) {
  __shared__ unsigned long long warpKeys[launch::kGemvWarps];
  const int warp = threadIdx.x / launch::kWarpSize, lane = threadIdx.x % launch::kWarpSize;
  unsigned long long key = 0; // rows past N take part as "nothing"
  detail::gemvTasks<K, T, 1, RmsPrologue, Split>(
      x, eps, N, [&](int row, int) { return w + (size_t)row * K; },
      [&](int row, const float (&dot)[1]) { key = detail::maxKey(key, detail::argmaxKey(dot[0], (unsigned)row)); });
  if (lane == 0)
    warpKeys[warp] = key;
  __syncthreads();
  if (threadIdx.x == 0) {
    unsigned long long best = warpKeys[0];
#pragma unroll
    for (int i = 1; i < launch::kGemvWarps; ++i)
      best = detail::maxKey(best, warpKeys[i]);
    partialKeys[detail::blockX()] = best;
  }
}

namespace detail {

/// The token the classifier's PartialKeys keys point to, to every thread of
/// the block (Threads of them).
template <int PartialKeys, int Threads>
__device__ __forceinline__ int tokenOfKeys(const unsigned long long *partialKeys) {
  unsigned long long key = 0;
  for (int i = threadIdx.x; i < PartialKeys; i += Threads)
    key = maxKey(key, partialKeys[i]);
  return argmaxKeyIndex(blockMaxKey<Threads>(key));
}

} // namespace detail

/// Threads: the block size (the persistent kernel's blocks are smaller).
template <int PartialKeys, int Threads = launch::kArgmaxThreads>
__device__ __forceinline__ void argmax_keys(const unsigned long long *partialKeys,
                                            int *__restrict__ token) {
  const int t = detail::tokenOfKeys<PartialKeys, Threads>(partialKeys);
  if (threadIdx.x == 0)
    *token = t;
}
#endif // LLAMAC_DEVICE_CODE

} // namespace llamac
