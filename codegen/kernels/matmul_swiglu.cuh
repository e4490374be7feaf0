//===- codegen/kernels/matmul_swiglu.cuh - matmul_swiglu: the FFN gate ------===//
//
// Op:     %y = matmul_swiglu %x, @W1, @W3 [rms prologue]   x: [K] f32, W1, W3: [N][K] of T
// Math:   a = sum_k (x[k] * s) * W1[n][k],  b = sum_k (x[k] * s) * W3[n][k]   (s as in matmul.cuh)
//         y[n] = a * (1 / (1 + expf(-a))) * b   (SiLU(a) * b, in llama2.c's order)
// Launch: launch::matmulSwiglu(N, Split): ceil(N * Split / 8) blocks of 256
//         threads; each task (Split warps) computes row n of W1 and of W3
//         together, reading x once.
// Bytes:  2*N*K*sizeof(T) + K*4 + N*4. stories110M (2048x768 f32): 12.6 MB, 4.2 us at 3 TB/s.
//
// Wrapper the code generator emits:
//   // %9 = matmul_swiglu %8, @l0.w1, @l0.w3 : tensor<2048xf32>
//   extern "C" __global__ void __launch_bounds__(256)
//   k9_matmul_swiglu(const float* x, const float* w1, const float* w3, float* y) {
//     llamac::matmul_swiglu<2048 /*N*/, 768 /*K*/, float /*weight type*/, true /*rms prologue*/, 1 /*split*/>(x, w1, w3, y, 1e-5f);
//   }
//
//===----------------------------------------------------------------------===//
#pragma once

#include "gemv.cuh"

namespace llamac {
namespace launch {

LLAMAC_HOST_DEVICE constexpr Shape matmulSwiglu(unsigned n, unsigned split) { return gemv(n, split); }

} // namespace launch

#if LLAMAC_DEVICE_CODE
template <int N, int K, typename T, bool RmsPrologue, int Split>
__device__ __forceinline__ void matmul_swiglu(const float *x, const T *__restrict__ w1,
                                              const T *__restrict__ w3, float *__restrict__ y,
                                              float eps) {
  detail::gemvTasks<K, T, 2, RmsPrologue, Split>(
      x, eps, N, [&](int row, int r) { return (r == 0 ? w1 : w3) + (size_t)row * K; },
      [&](int row, const float(&dots)[2]) {
        const float a = dots[0], b = dots[1];
        y[row] = a * (1.0f / (1.0f + expf(-a))) * b;
      });
}
#endif // LLAMAC_DEVICE_CODE

} // namespace llamac
