//===- codegen/kernels/rmsnorm.cuh - rmsnorm: RMS normalization with gains --===//
//
// Op:     %y = rmsnorm %x, @g {eps}     x: [D] f32, g: [D] of T
// Math:   s = 1.0f / sqrtf(sum_i x[i]^2 / D + eps)   (IEEE sqrt and division,
//         not rsqrtf, to match the CPU); y[i] = g[i] * (s * x[i]) (llama2.c's
//         order of multiplication). y may alias x: every thread has read its
//         x[i] for the sum before any y[i] is written.
// Launch: launch::rmsnorm(D): 1 block of 1024 threads.
// Bytes:  D*4 (x, read twice, the second time from L1) + D*sizeof(T) + D*4.
//         Usually fused into the next matmul instead (its RMS prologue).
//
// Wrapper the code generator emits:
//   // %2 = rmsnorm %1, @l0.rms_att {eps = 1e-05} : tensor<768xf32>
//   extern "C" __global__ void __launch_bounds__(1024)
//   k2_rmsnorm(const float* x, const float* g, float* y) {
//     llamac::rmsnorm<768 /*D*/, float /*gain type*/>(x, g, y, 1e-5f);
//   }
//
//===----------------------------------------------------------------------===//
#pragma once

#include "common.cuh"

namespace llamac {
namespace launch {

[[maybe_unused]] constexpr int kRmsNormThreads = 1024;

LLAMAC_HOST_DEVICE constexpr Shape rmsnorm() { return {1, 1, kRmsNormThreads, 0}; }

} // namespace launch

#if LLAMAC_DEVICE_CODE
template <int D, typename T>
__device__ __forceinline__ void rmsnorm(const float *x, const T *__restrict__ g, float *y, float eps) {
  constexpr int kThreads = launch::kRmsNormThreads;
  const float scale = detail::rmsInverse<D, kThreads>(x, eps);
  for (int i = threadIdx.x; i < D; i += kThreads)
    y[i] = detail::toFloat(g[i]) * (scale * x[i]);
}
#endif // LLAMAC_DEVICE_CODE

} // namespace llamac
