//===- codegen/kernels/kv_write.cuh - kv_write: append to the KV cache ------===//
//
// Op:     kv_write %k, %v, %pos {layer}   k, v: [Nk] f32; pos: i32 in device memory;
//         kcache, vcache: this layer's [seq_len][Nk] of KvT (float, f16 or
//         bf16: the KV cache dtype; offset by the caller).
// Math:   kcache[pos][i] = k[i], vcache[pos][i] = v[i] (rounded to KvT).
// Launch: launch::kvWrite(Nk): ceil(Nk / 256) blocks of 256 threads.
// Bytes:  4*Nk*4; negligible. Usually fused into matmul_qkv_rope_kv instead.
//
// Wrapper the code generator emits:
//   // kv_write %8, %9, %pos {layer = 0}
//   extern "C" __global__ void __launch_bounds__(256)
//   k10_kv_write(const float* k, const float* v, const int* pos, float* kcache, float* vcache) {
//     llamac::kv_write<768 /*Nk*/, float /*KV cache type*/>(k, v, pos, kcache, vcache);
//   }
//
//===----------------------------------------------------------------------===//
#pragma once

#include "common.cuh"

namespace llamac {
namespace launch {

LLAMAC_HOST_DEVICE constexpr Shape kvWrite(unsigned nk) { return elementwise(nk); }

} // namespace launch

#if LLAMAC_DEVICE_CODE
template <int Nk, typename KvT>
__device__ __forceinline__ void kv_write(const float *k, const float *v,
                                         const int *pos, KvT *__restrict__ kcache,
                                         KvT *__restrict__ vcache) {
  const int i = detail::elementIndex();
  if (i >= Nk)
    return;
  const size_t at = (size_t)*pos * Nk + i;
  detail::storeAs(k[i], kcache + at);
  detail::storeAs(v[i], vcache + at);
}
#endif // LLAMAC_DEVICE_CODE

} // namespace llamac
