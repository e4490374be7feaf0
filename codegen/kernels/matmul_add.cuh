//===- codegen/kernels/matmul_add.cuh - matmul_add: y = r + W x -------------===//
//
// Op:     %y = matmul_add %x, @W, %r [rms prologue]   x: [K] f32, W: [N][K] of T, r: [N] f32
// Math:   y[n] = r[n] + sum_k (x[k] * s) * W[n][k]   (s as in matmul.cuh)
//         y may alias r (the in-place residual update): each y[n] is written by
//         the one lane that read r[n], after reading it. x must not alias y.
// Launch: launch::matmulAdd(N, Split): ceil(N * Split / 8) blocks of 256 threads,
//         Split warps per row (gemv.cuh).
// Bytes:  N*K*sizeof(T) + K*4 + 2*N*4. stories110M wo (768x768 f32): 2.36 MB.
//
// Wrapper the code generator emits:
//   // %12 = matmul_add %11, @l0.wo, %3 : tensor<768xf32>
//   extern "C" __global__ void __launch_bounds__(256)
//   k12_matmul_add(const float* x, const float* w, const float* r, float* y) {
//     llamac::matmul_add<768 /*N*/, 768 /*K*/, float /*weight type*/, false /*rms prologue*/, 1 /*split*/>(x, w, r, y, 1e-5f);
//   }
//
//===----------------------------------------------------------------------===//
#pragma once

#include "gemv.cuh"

namespace llamac {
namespace launch {

LLAMAC_HOST_DEVICE constexpr Shape matmulAdd(unsigned n, unsigned split) { return gemv(n, split); }

} // namespace launch

#if LLAMAC_DEVICE_CODE
template <int N, int K, typename T, bool RmsPrologue, int Split>
__device__ __forceinline__ void matmul_add(const float *x, const T *__restrict__ w,
                                           const float *r, float *y, float eps) {
  // The residual is loaded as soon as it may be (after the wait: the kernel
  // before wrote it), its latency overlapping the sums'.
  struct Residual {
    const float *r;
    float value = 0.0f;
    __device__ void beforeWait(int) {}
    __device__ void afterWait(int row) { value = r[row]; }
  } residual{r};
  detail::gemvTasks<K, T, 1, RmsPrologue, Split>(
      x, eps, N, [&](int row, int) { return w + (size_t)row * K; },
      [&](int row, const float(&dot)[1]) { y[row] = residual.value + dot[0]; }, residual);
}
#endif // LLAMAC_DEVICE_CODE

} // namespace llamac
