//===- codegen/kernels/argmax.cuh - argmax: the greedy token ----------------===//
//
// Op:     %t = argmax %x      x: [N] f32 -> t: i32 in device memory
// Math:   t = the index of the largest x[i], the lowest such index on ties
//         (llama2.c's sample_argmax). NaNs are never chosen unless all are NaN,
//         and -0 equals +0.
// Launch: launch::argmax(): 1 block of 1024 threads; each thread scans a
//         strided slice, then the block reduces packed (value, index) keys.
// Bytes:  N*4; a 32000-entry vocabulary is 128 KB, ~2 us for one SM.
//         For the classifier, prefer matmul_argmax, which never writes logits.
//
// Wrapper the code generator emits:
//   // %40 = argmax %39 : tensor<i32>
//   extern "C" __global__ void __launch_bounds__(1024)
//   k40_argmax(const float* x, int* token) { llamac::argmax<32000 /*N*/>(x, token); }
//
//===----------------------------------------------------------------------===//
#pragma once

#include "common.cuh"

namespace llamac {
namespace launch {

[[maybe_unused]] constexpr int kArgmaxThreads = 1024;

LLAMAC_HOST_DEVICE constexpr Shape argmax() { return {1, 1, kArgmaxThreads, 0}; }

} // namespace launch

#if LLAMAC_DEVICE_CODE
namespace detail {

/// Packs (value, index) into one integer whose order is the argmax order:
/// larger values first, then lower indices; NaN ranks below every number.
/// Key 0 is below every real key, so it can stand for "nothing yet".
__device__ __forceinline__ unsigned long long argmaxKey(float value, unsigned index) {
  unsigned ordered = 0; // NaN
  if (value == value) {
    const unsigned bits = __float_as_uint(value == 0.0f ? 0.0f : value);
    ordered = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
  }
  return ((unsigned long long)ordered << 32) | (0xffffffffu - index);
}

__device__ __forceinline__ int argmaxKeyIndex(unsigned long long key) {
  return (int)(0xffffffffu - (unsigned)(key & 0xffffffffull));
}

__device__ __forceinline__ unsigned long long maxKey(unsigned long long a, unsigned long long b) {
  return a > b ? a : b;
}

/// The largest key of the block; every thread must call it and gets the result.
template <int Threads> __device__ __forceinline__ unsigned long long blockMaxKey(unsigned long long key) {
  constexpr int kWarps = Threads / kWarpSize;
  __shared__ unsigned long long partial[kWarps];
  __shared__ unsigned long long total;
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2)
    key = maxKey(key, __shfl_xor_sync(0xffffffffu, key, offset));
  if (lane == 0)
    partial[warp] = key;
  __syncthreads();
  if (warp == 0) {
    unsigned long long k = lane < kWarps ? partial[lane] : 0ull;
#pragma unroll
    for (int offset = kWarpSize / 2; offset > 0; offset /= 2)
      k = maxKey(k, __shfl_xor_sync(0xffffffffu, k, offset));
    if (lane == 0)
      total = k;
  }
  __syncthreads();
  const unsigned long long result = total;
  __syncthreads();
  return result;
}

} // namespace detail

template <int N>
__device__ __forceinline__ void argmax(const float *x, int *__restrict__ token) {
  constexpr int kThreads = launch::kArgmaxThreads;
  unsigned long long key = 0;
  for (int i = threadIdx.x; i < N; i += kThreads)
    key = detail::maxKey(key, detail::argmaxKey(x[i], (unsigned)i));
  key = detail::blockMaxKey<kThreads>(key);
  if (threadIdx.x == 0)
    *token = detail::argmaxKeyIndex(key);
}
#endif // LLAMAC_DEVICE_CODE

} // namespace llamac
