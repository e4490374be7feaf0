//===- codegen/kernels/silu_mul.cuh - silu_mul: the SwiGLU gate, unfused ----===//
//
// Op:     %y = silu_mul %a, %b      a, b: [N] f32
// Math:   y[i] = a[i] * (1 / (1 + expf(-a[i]))) * b[i] (llama2.c's order). y may
//         alias a or b.
// Launch: launch::siluMul(N): ceil(N / 256) blocks of 256 threads.
// Bytes:  3*N*4; negligible. Usually fused into matmul_swiglu instead.
//
// Wrapper the code generator emits:
//   // %10 = silu_mul %8, %9 : tensor<2048xf32>
//   extern "C" __global__ void __launch_bounds__(256)
//   k10_silu_mul(const float* a, const float* b, float* y) { llamac::silu_mul<2048 /*N*/>(a, b, y); }
//
//===----------------------------------------------------------------------===//
#pragma once

#include "common.cuh"

namespace llamac {
namespace launch {

LLAMAC_HOST_DEVICE constexpr Shape siluMul(unsigned n) { return elementwise(n); }

} // namespace launch

#if LLAMAC_DEVICE_CODE
template <int N>
__device__ __forceinline__ void silu_mul(const float *a, const float *b, float *y) {
  const int i = detail::elementIndex();
  if (i >= N)
    return;
  const float x = a[i];
  y[i] = x * (1.0f / (1.0f + expf(-x))) * b[i];
}
#endif // LLAMAC_DEVICE_CODE

} // namespace llamac
