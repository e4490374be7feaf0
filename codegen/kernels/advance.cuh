//===- codegen/kernels/advance.cuh - Chaining greedy steps on the device ---===//
//
// Not IR ops: the runtime's step to step hand-over, so that several greedy
// decode steps run from one CUDA graph with no host round trip between them.
// Two forms; the code generator emits the second where it can.
//
// 1. advance_greedy(produced, token, pos, history), one thread, launched
//    after a whole @decode_greedy step:
//      history[1 + *pos - history[0]] = *produced;  (history[0]: the chain's
//                                                   first pos)
//      *token = *produced;  *pos += 1;
//    so the next step reads the token this one produced, at the next
//    position, and the host reads every produced token once the chain is
//    done. Launch: launch::advance(): 1 block of 32 threads (thread 0 works).
//    It stays for persistent and tensor parallel plans.
//
// 2. The plan functions greedy_chain_start (the embedding) and
//    greedy_chain_step (@decode_greedy's other launches, its last two
//    replaced), with no kernel of their own between steps:
//    - the classifier, matmul_argmax, takes pos: its block 0 waits first,
//      then sets *pos += 1 and only then lets the next kernel launch
//      (advance_position). Every kernel of the step before it has finished
//      then, and every kernel after it reads the new pos, even before its
//      own wait (attention.cuh and the RoPE do);
//    - argmax_keys_chained<P, D, T>(keys, pos, history, token, table, x)
//      reduces the classifier's P keys to the token t as argmax_keys does,
//      then sets history[*pos - history[0]] = t (pos is already the next
//      one), *token = t, and x = table[t], the next step's embedding, which
//      its layer 0 reads after its wait. Launch: launch::argmaxKeys(1024).
//    The next step's kernels then launch during the classifier's last wave
//    and load their weights before it ends, instead of after three
//    hand-overs (argmax_keys, advance_greedy, embedding).
//
// Bytes:  a few words; the second form also reads P keys and one table row.
//
// Wrappers the code generator emits (plan functions advance_greedy,
// greedy_chain_step):
//   extern "C" __global__ void __launch_bounds__(32)
//   advance_greedy(const int* produced, int* token, int* pos, int* history) {
//     llamac::advance_greedy(produced, token, pos, history);
//   }
//   extern "C" __global__ void __launch_bounds__(1024)
//   argmax_keys_chained_p2048_d768_f16(const unsigned long long* keys, const int* pos, int* history,
//                                      int* token, const llamac::f16* table, float* x) {
//     llamac::argmax_keys_chained<2048, 768, llamac::f16>(keys, pos, history, token, table, x);
//   }
//   (matmul_argmax_..._advance: as in matmul_argmax.cuh, with `int* pos`,
//   starting with llamac::advance_position(pos, w) where the others let
//   the next kernel launch.)
//
//===----------------------------------------------------------------------===//
#pragma once

#include "matmul_argmax.cuh"

namespace llamac {
namespace launch {

LLAMAC_HOST_DEVICE constexpr Shape advance() { return {1, 1, kWarpSize, 0}; }

} // namespace launch

#if LLAMAC_DEVICE_CODE
__device__ __forceinline__ void advance_greedy(const int *produced, int *__restrict__ token,
                                               int *__restrict__ pos, int *__restrict__ history) {
  if (threadIdx.x != 0)
    return;
  const int t = *produced, p = *pos;
  history[1 + p - history[0]] = t;
  *token = t;
  *pos = p + 1;
}

/// The chained classifier's start (form 2 above), in place of
/// allowDependentLaunchAtStart(w): block 0 waits for the kernels before,
/// advances pos and makes the store visible, and only then lets the next
/// kernel launch (or leaves that to warpDots, once it has issued its
/// preloads of w: gemv.cuh); the other blocks do as any matmul kernel. The next
/// kernel launches when every block has.
#if !LLAMAC_PERSISTENT
template <typename T> __device__ __forceinline__ void advance_position(int *pos, const T *w) {
  if (detail::blockX() == 0) {
    detail::waitForPreviousKernel<false>();
    if (threadIdx.x == 0) {
      *pos += 1;
      __threadfence();
    }
    __syncthreads();
  }
  detail::allowDependentLaunchAtStart(w); // (the late-trigger experiment: at the template's wait)
}
#endif // !LLAMAC_PERSISTENT

/// Form 2's second kernel: argmax_keys, the history, the token and the next
/// step's embedding. pos is already the next step's (advance_position).
template <int PartialKeys, int D, typename T>
__device__ __forceinline__ void argmax_keys_chained(const unsigned long long *partialKeys, const int *pos,
                                                    int *__restrict__ history, int *__restrict__ token,
                                                    const T *__restrict__ table, float *__restrict__ x) {
  constexpr int kThreads = launch::kArgmaxThreads;
  const int t = detail::tokenOfKeys<PartialKeys, kThreads>(partialKeys);
  if (threadIdx.x == 0) {
    // 1 and up while pos advances; never history[0] or before it, even when
    // a timing run leaves the classifier out (LLAMAC_SKIP_KERNELS).
    const int slot = *pos - history[0];
    if (slot >= 1)
      history[slot] = t;
    *token = t;
  }
  for (int i = threadIdx.x; i < D; i += kThreads)
    x[i] = detail::toFloat(table[(size_t)t * D + i]);
}
#endif // LLAMAC_DEVICE_CODE

} // namespace llamac
