//===- codegen/kernels/slice.cuh - slice: a contiguous piece of a vector ----===//
//
// Op:     %y = slice %x {offset, size}      x: [n] f32 -> y: [size] f32
// Math:   y[i] = x[offset + i], i < size. y must not overlap x.
// Launch: launch::slice(Size): ceil(Size / 256) blocks of 256 threads.
// Bytes:  2*Size*4; negligible.
//
// Wrapper the code generator emits:
//   // %7 = slice %6 {offset = 768, size = 768} : tensor<768xf32>
//   extern "C" __global__ void __launch_bounds__(256)
//   k7_slice(const float* x, float* y) { llamac::slice<768 /*offset*/, 768 /*size*/>(x, y); }
//
//===----------------------------------------------------------------------===//
#pragma once

#include "common.cuh"

namespace llamac {
namespace launch {

LLAMAC_HOST_DEVICE constexpr Shape slice(unsigned size) { return elementwise(size); }

} // namespace launch

#if LLAMAC_DEVICE_CODE
template <int Offset, int Size>
__device__ __forceinline__ void slice(const float *x, float *__restrict__ y) {
  const int i = detail::elementIndex();
  if (i < Size)
    y[i] = x[Offset + i];
}
#endif // LLAMAC_DEVICE_CODE

} // namespace llamac
