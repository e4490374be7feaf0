//===- codegen/kernels/matmul.cuh - matmul: y = W x --------------------------===//
//
// Op:     %y = matmul %x, @W [rms prologue]     x: tensor<Kxf32>, W: [N][K] of T
// Math:   s = 1 / sqrtf(sum_k x[k]^2 / K + eps) with the RMS prologue, else 1
//         (the RMSNorm gains are folded into W by the fusion pass);
//         y[n] = sum_k (x[k] * s) * W[n][k]
// Launch: launch::matmul(N, Split): ceil(N * Split / 8) blocks of 256 threads,
//         Split warps per row (gemv.cuh).
// Bytes:  N*K*sizeof(T) (W, read once) + K*4 (x, from L2 per block) + N*4 (y).
//         768x768 f32: 2.36 MB, 0.79 us at 3 TB/s.
//
// Wrapper the code generator emits:
//   // %5 = matmul %4, @l0.wq : tensor<768xf32>
//   extern "C" __global__ void __launch_bounds__(256)
//   k5_matmul(const float* x, const float* w, float* y) {
//     llamac::matmul<768 /*N*/, 768 /*K*/, float /*weight type*/, false /*rms prologue*/, 1 /*split*/>(x, w, y, 1e-5f);
//   }
//
//===----------------------------------------------------------------------===//
#pragma once

#include "gemv.cuh"

namespace llamac {
namespace launch {

LLAMAC_HOST_DEVICE constexpr Shape matmul(unsigned n, unsigned split) { return gemv(n, split); }

} // namespace launch

#if LLAMAC_DEVICE_CODE
template <int N, int K, typename T, bool RmsPrologue, int Split>
__device__ __forceinline__ void matmul(const float *x, const T *__restrict__ w,
                                       float *__restrict__ y, float eps) {
  detail::gemvTasks<K, T, 1, RmsPrologue, Split>(
      x, eps, N, [&](int row, int) { return w + (size_t)row * K; },
      [&](int row, const float(&dot)[1]) { y[row] = dot[0]; });
}
#endif // LLAMAC_DEVICE_CODE

} // namespace llamac
