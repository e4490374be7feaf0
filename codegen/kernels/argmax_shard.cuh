//===- codegen/kernels/argmax_shard.cuh - one rank's classifier argmax key ---===//
//
// Op:     %k = matmul_argmax_shard %x, @W   (tensor parallel: W is this rank's
//         Rows rows of the classifier, rows rank*Rows .. rank*Rows + Rows - 1)
// Math:   k = the packed key (argmax.cuh) of this rank's best row, its index
//         made global: rank * Rows + row. Keys order like (logit, -index), so
//         the largest key over the ranks is the single-GPU argmax, lowest index
//         on ties. argmax_reduce all-gathers one key per rank (NCCL) and
//         reduces them with argmax_keys<Ranks> (matmul_argmax.cuh).
// Launch: after matmul_argmax<Rows, K, T, Rms> has written P partial keys with
//         row indices local to the shard: launch::argmaxShardKey(), 1 block of
//         1024 threads, reduces them and writes the key (8 bytes).
// Bytes:  8*P + 8.
//
// Wrapper the code generator emits:
//   // %40 = matmul_argmax_shard %39, @tok_embeddings.g.rows : tensor<2xi32>
//   extern "C" __global__ void __launch_bounds__(1024)
//   argmax_shard_key_p2000_r16000(const unsigned long long* keys, int rank, unsigned long long* key) {
//     llamac::argmax_shard_key<2000 /*partial keys*/, 16000 /*rows*/>(keys, rank, key);
//   }
//
//===----------------------------------------------------------------------===//
#pragma once

#include "argmax.cuh"

namespace llamac {
namespace launch {

LLAMAC_HOST_DEVICE constexpr Shape argmaxShardKey() { return {1, 1, kArgmaxThreads, 0}; }

} // namespace launch

#if LLAMAC_DEVICE_CODE
template <int PartialKeys, int Rows>
__device__ __forceinline__ void argmax_shard_key(const unsigned long long *partialKeys, int rank,
                                                 unsigned long long *__restrict__ key) {
  constexpr int kThreads = launch::kArgmaxThreads;
  unsigned long long best = 0;
  for (int i = threadIdx.x; i < PartialKeys; i += kThreads)
    best = detail::maxKey(best, partialKeys[i]);
  best = detail::blockMaxKey<kThreads>(best);
  if (threadIdx.x == 0) {
    const unsigned global = (unsigned)detail::argmaxKeyIndex(best) + (unsigned)rank * (unsigned)Rows;
    *key = (best & 0xffffffff00000000ull) | (unsigned long long)(0xffffffffu - global);
  }
}
#endif // LLAMAC_DEVICE_CODE

} // namespace llamac
