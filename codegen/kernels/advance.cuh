//===- codegen/kernels/advance.cuh - Chaining greedy steps on the device ---===//
//
// Not an IR op: the runtime's step to step hand-over, so that several greedy
// decode steps run from one CUDA graph with no host round trip between them.
//
// Kernel: advance_greedy(produced, token, pos, history), one thread, launched
//         after a @decode_greedy step:
//           history[1 + *pos - history[0]] = *produced;  (history[0]: the
//                                                        chain's first pos)
//           *token = *produced;  *pos += 1;
//         so the next step reads the token this one produced, at the next
//         position, and the host reads every produced token once the chain
//         is done.
// Launch: launch::advance(): 1 block of 32 threads (thread 0 works).
// Bytes:  a few words.
//
// Wrapper the code generator emits (the plan function "advance_greedy"):
//   extern "C" __global__ void __launch_bounds__(32)
//   advance_greedy(const int* produced, int* token, int* pos, int* history) {
//     llamac::advance_greedy(produced, token, pos, history);
//   }
//
//===----------------------------------------------------------------------===//
#pragma once

#include "common.cuh"

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
#endif // LLAMAC_DEVICE_CODE

} // namespace llamac
