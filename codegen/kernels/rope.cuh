//===- codegen/kernels/rope.cuh - rope: rotary position embedding -----------===//
//
// Op:     %y = rope %x, %pos {head_size = HS, theta}   x: [N] f32, pos: i32 in device memory
// Math:   for each even i: j = i % HS, freq = 1 / powf(theta, j / (float)HS),
//         a = pos * freq,
//         (y[i], y[i+1]) = (x0*cosf(a) - x1*sinf(a), x0*sinf(a) + x1*cosf(a)),
//         all in float, exactly as llama2.c writes it. y may alias x.
// Launch: launch::rope(N): ceil(N/2 / 256) blocks of 256 threads, one pair per thread.
// Bytes:  2*N*4; negligible.
//
// Matching the CPU to 1e-5: the angle at position 8000 is ~8000 rad, so one
// ulp of difference in freq moves it by ~1e-3. CUDA's powf may be 2 ulp off
// where glibc's is (nearly) correctly rounded, so freq is computed in double
// and rounded once to float: that matches glibc's powf for every head size
// that is a power of two up to 512, at theta 1e4, 5e5 and 1e6 (checked).
// The products are rounded one at a time (__fmul_rn/__fadd_rn) so the
// compiler cannot fuse them into an FMA the CPU does not do.
//
// Wrapper the code generator emits:
//   // %7 = rope %6, %pos {head_size = 64, theta = 10000.0} : tensor<768xf32>
//   extern "C" __global__ void __launch_bounds__(256)
//   k7_rope(const float* x, const int* pos, float* y) {
//     llamac::rope<768 /*N*/, 64 /*head size*/>(x, pos, y, 10000.0f);
//   }
//
//===----------------------------------------------------------------------===//
#pragma once

#include "common.cuh"

namespace llamac {
namespace launch {

LLAMAC_HOST_DEVICE constexpr Shape rope(unsigned n) { return elementwise(n / 2); }

} // namespace launch

#if LLAMAC_DEVICE_CODE
namespace detail {

/// The rotation of the pair at offset j (even) within a head of HeadSize at
/// position pos: c = cos(angle), s = sin(angle), angle = pos / theta^(j / HeadSize).
template <int HeadSize>
__device__ __forceinline__ void ropeCosSin(int j, int pos, float theta, float &c, float &s) {
  const float exponent = (float)j / (float)HeadSize;
  const float freq = 1.0f / (float)pow((double)theta, (double)exponent);
  const float angle = (float)pos * freq;
  c = cosf(angle);
  s = sinf(angle);
}

/// Rotates (x0, x1) by the angle whose cosine and sine are c and s.
__device__ __forceinline__ void ropeApply(float c, float s, float &x0, float &x1) {
  const float r0 = __fadd_rn(__fmul_rn(x0, c), -__fmul_rn(x1, s));
  const float r1 = __fadd_rn(__fmul_rn(x0, s), __fmul_rn(x1, c));
  x0 = r0;
  x1 = r1;
}

/// Rotates the pair (x0, x1) at offset j (even) within a head of HeadSize.
template <int HeadSize>
__device__ __forceinline__ void ropeRotate(int j, int pos, float theta, float &x0, float &x1) {
  float c, s;
  ropeCosSin<HeadSize>(j, pos, theta, c, s);
  ropeApply(c, s, x0, x1);
}

} // namespace detail

template <int N, int HeadSize>
__device__ __forceinline__ void rope(const float *x, const int *pos, float *y, float theta) {
  static_assert(N % 2 == 0 && HeadSize % 2 == 0 && N % HeadSize == 0, "whole heads of pairs");
  const int pair = detail::elementIndex();
  if (pair >= N / 2)
    return;
  const int i = 2 * pair;
  float x0 = x[i], x1 = x[i + 1];
  detail::ropeRotate<HeadSize>(i % HeadSize, *pos, theta, x0, x1);
  y[i] = x0;
  y[i + 1] = x1;
}
#endif // LLAMAC_DEVICE_CODE

} // namespace llamac
