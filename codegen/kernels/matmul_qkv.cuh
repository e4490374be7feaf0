//===- codegen/kernels/matmul_qkv.cuh - matmul_qkv: Q, K and V in one pass --===//
//
// Op:     %y = matmul_qkv %x, @Wq, @Wk, @Wv [rms prologue]
//         x: [K] f32; Wq: [Nq][K], Wk: [Nk][K], Wv: [Nv][K] of T (three tensors)
// Math:   y = concat(Wq x', Wk x', Wv x'), x' = x * s (s as in matmul.cuh);
//         y has Nq + Nk + Nv elements.
// Launch: launch::matmulQkv(Nq + Nk + Nv, Split): ceil((Nq+Nk+Nv) * Split / 8)
//         blocks of 256 threads, Split warps per row of the concatenation.
// Bytes:  (Nq+Nk+Nv)*K*sizeof(T) + K*4 + (Nq+Nk+Nv)*4.
//         stories110M (3 x 768x768 f32): 7.1 MB, 2.4 us at 3 TB/s.
//
// Wrapper the code generator emits:
//   // %6 = matmul_qkv %5, @l0.wq, @l0.wk, @l0.wv : tensor<2304xf32>
//   extern "C" __global__ void __launch_bounds__(256)
//   k6_matmul_qkv(const float* x, const float* wq, const float* wk, const float* wv, float* y) {
//     llamac::matmul_qkv<768 /*Nq*/, 768 /*Nk*/, 768 /*Nv*/, 768 /*K*/, float, true /*rms prologue*/, 1 /*split*/>(
//         x, wq, wk, wv, y, 1e-5f);
//   }
//
//===----------------------------------------------------------------------===//
#pragma once

#include "gemv.cuh"

namespace llamac {
namespace launch {

LLAMAC_HOST_DEVICE constexpr Shape matmulQkv(unsigned nTotal, unsigned split) { return gemv(nTotal, split); }

} // namespace launch

#if LLAMAC_DEVICE_CODE
template <int Nq, int Nk, int Nv, int K, typename T, bool RmsPrologue, int Split>
__device__ __forceinline__ void matmul_qkv(const float *x, const T *__restrict__ wq,
                                           const T *__restrict__ wk, const T *__restrict__ wv,
                                           float *__restrict__ y, float eps) {
  auto rowsOf = [&](int row, int) {
    return row < Nq        ? wq + (size_t)row * K
           : row < Nq + Nk ? wk + (size_t)(row - Nq) * K
                           : wv + (size_t)(row - Nq - Nk) * K;
  };
  detail::gemvTasks<K, T, 1, RmsPrologue, Split>(x, eps, Nq + Nk + Nv, rowsOf,
                                                 [&](int row, const float(&dot)[1]) { y[row] = dot[0]; });
}
#endif // LLAMAC_DEVICE_CODE

} // namespace llamac
