//===- codegen/kernels/add.cuh - add: element-wise sum ----------------------===//
//
// Op:     %y = add %a, %b      a, b: [N] f32
// Math:   y[i] = a[i] + b[i]. y may alias a or b (the residual update).
// Launch: launch::add(N): ceil(N / 256) blocks of 256 threads.
// Bytes:  3*N*4; negligible. Usually fused into matmul_add instead.
//
// Wrapper the code generator emits:
//   // %13 = add %3, %12 : tensor<768xf32>
//   extern "C" __global__ void __launch_bounds__(256)
//   k13_add(const float* a, const float* b, float* y) { llamac::add<768 /*N*/>(a, b, y); }
//
//===----------------------------------------------------------------------===//
#pragma once

#include "common.cuh"

namespace llamac {
namespace launch {

LLAMAC_HOST_DEVICE constexpr Shape add(unsigned n) { return elementwise(n); }

} // namespace launch

#if LLAMAC_DEVICE_CODE
template <int N> __device__ __forceinline__ void add(const float *a, const float *b, float *y) {
  const int i = detail::elementIndex();
  if (i < N)
    y[i] = a[i] + b[i];
}
#endif // LLAMAC_DEVICE_CODE

} // namespace llamac
