//===- codegen/kernels/rms_normalize.cuh - rms_normalize: RMSNorm, no gain --===//
//
// Op:     %y = rms_normalize %x {eps}     x: [D] f32
// Math:   s = 1.0f / sqrtf(sum_i x[i]^2 / D + eps); y[i] = s * x[i]. The gain
//         was folded into the consuming matmuls. y may alias x.
// Launch: launch::rmsNormalize(): 1 block of 1024 threads.
// Bytes:  2*D*4; negligible. Usually fused into the next matmul instead.
//
// Wrapper the code generator emits:
//   // %2 = rms_normalize %1 {eps = 1e-05} : tensor<768xf32>
//   extern "C" __global__ void __launch_bounds__(1024)
//   k2_rms_normalize(const float* x, float* y) { llamac::rms_normalize<768 /*D*/>(x, y, 1e-5f); }
//
//===----------------------------------------------------------------------===//
#pragma once

#include "rmsnorm.cuh"

namespace llamac {
namespace launch {

LLAMAC_HOST_DEVICE constexpr Shape rmsNormalize() { return rmsnorm(); }

} // namespace launch

#if LLAMAC_DEVICE_CODE
template <int D> __device__ __forceinline__ void rms_normalize(const float *x, float *y, float eps) {
  constexpr int kThreads = launch::kRmsNormThreads;
  const float scale = detail::rmsInverse<D, kThreads>(x, eps);
  for (int i = threadIdx.x; i < D; i += kThreads)
    y[i] = scale * x[i];
}
#endif // LLAMAC_DEVICE_CODE

} // namespace llamac
