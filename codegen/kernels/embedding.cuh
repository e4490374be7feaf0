//===- codegen/kernels/embedding.cuh - embedding: a row of the token table --===//
//
// Op:     %x = embedding @table, %token     table: [V][D] of T; token: i32 in device memory
// Math:   y[d] = table[token][d], widened to f32. The token is not clamped: the
//         runtime checks 0 <= token < V on the host before the step.
// Launch: launch::embedding(D): ceil(D / 256) blocks of 256 threads, one element each.
// Bytes:  D*sizeof(T) + D*4; negligible.
//
// Wrapper the code generator emits:
//   // %1 = embedding @tok_embeddings, %token : tensor<768xf32>
//   extern "C" __global__ void __launch_bounds__(256)
//   k1_embedding(const float* table, const int* token, float* y) {
//     llamac::embedding<768 /*D*/, float /*table type*/>(table, token, y);
//   }
//
//===----------------------------------------------------------------------===//
#pragma once

#include "common.cuh"

namespace llamac {
namespace launch {

LLAMAC_HOST_DEVICE constexpr Shape embedding(unsigned d) { return elementwise(d); }

} // namespace launch

#if LLAMAC_DEVICE_CODE
template <int D, typename T>
__device__ __forceinline__ void embedding(const T *__restrict__ table, const int *token,
                                          float *__restrict__ y) {
  const int i = detail::elementIndex();
  if (i < D)
    y[i] = detail::toFloat(table[(size_t)*token * D + i]);
}
#endif // LLAMAC_DEVICE_CODE

} // namespace llamac
