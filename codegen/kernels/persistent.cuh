//===- codegen/kernels/persistent.cuh - One kernel for a whole step --------===//
//
// Not an op: the runtime of the persistent kernel, which runs all launches of
// a plan function (a decode step) as phases of one kernel instead of one
// kernel each (llamac compile --persistent). Small models lose most of their
// step to the boundaries between ~60 kernels of a few microseconds each
// (bench/NOTES.md); inside one kernel a boundary is a counter in memory.
// Measured on the H100, a boundary here still costs more than a kernel
// boundary under programmatic dependent launch (bench/NOTES.md, session 4),
// so plans use it only when asked.
//
// The code generator emits, for a function of P launches:
//
//   #define LLAMAC_PERSISTENT 1
//   ...the templates...
//   extern "C" __global__ void __launch_bounds__(256)
//   persistent_decode(char* arena_, const char* weights_, char* kv_, const int* token_, const int* pos_) {
//     llamac::detail::startPersistent(reinterpret_cast<unsigned*>(arena_ + COUNTERS), P);
//     // phase p, for every launch p with grid (GX, GY):
//     llamac::detail::beginPhase(p);
//     { const float* x = ...; ...                                // the launch's arguments
//       for (int b = blockIdx.x; b < GX * GY; b += gridDim.x) {
//         llamac::detail::setBlock(b, GX);
//         <the launch's template call, as in its own kernel's wrapper>
//       } }
//     llamac::detail::endPhase(p);
//   }
//
// Launch: as many blocks of 256 threads as the GPU holds at once (the runtime
// asks the occupancy API, and launches it cooperatively so that all are
// resident); each block takes the launch's blocks b = blockIdx.x,
// blockIdx.x + gridDim.x, ... in turn, and the templates read b through
// blockX() and blockY() instead of blockIdx.
//
// Synchronization: counters[p] counts the blocks that have finished phase p
// (after a block barrier, with release semantics); the block that counts
// last sets done[p] (release). A template's waitForPreviousKernel() becomes
// waitForPreviousPhase(): one warp per block spins (acquire) until
// done[p - 1] is set and tells the block's other warps through shared
// memory. That is the same contract as programmatic dependent launch:
// weights may be read before the wait, activations only after it. Every
// block counts every phase, so done[p - 1] means every block is past phase
// p - 1 and, block by block in program order, past every phase before it.
// The block that completes the last phase zeroes counters and flags for the
// next launch: by then no block waits on any of them. They live in the
// plan's state region (zeroed once by the runtime).
//
//===----------------------------------------------------------------------===//
#pragma once

#include "common.cuh"

namespace llamac {
namespace launch {

/// Threads per block of the persistent kernel: every launch it absorbs must
/// use this block size.
[[maybe_unused]] constexpr int kPersistentThreads = 256;

} // namespace launch

#if LLAMAC_DEVICE_CODE && LLAMAC_PERSISTENT
namespace detail {

struct PersistentState {
  unsigned *counters; // per phase: blocks done with it; then per phase: 1 once all are
  int phase;          // the phase the block is in
  int blockX, blockY; // the launch block it works on
  int gridX;          // the launch's blocks in x
  int phases;         // in the kernel
  int released;       // the last phase the block saw every block finish
  int polling;        // the last phase for which a warp of the block polls
};

__device__ __forceinline__ PersistentState &persistentState() {
  __shared__ PersistentState state;
  return state;
}

__device__ __forceinline__ int blockX() { return persistentState().blockX; }
__device__ __forceinline__ int blockY() { return persistentState().blockY; }
__device__ __forceinline__ int gridX() { return persistentState().gridX; }

__device__ __forceinline__ unsigned loadAcquire(const unsigned *p) {
  unsigned v;
  asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ int loadAcquireShared(const int *p) {
  int v;
  asm volatile("ld.acquire.cta.shared.s32 %0, [%1];" : "=r"(v) : "r"((unsigned)__cvta_generic_to_shared(p)) : "memory");
  return v;
}
__device__ __forceinline__ void storeReleaseShared(int *p, int v) {
  asm volatile("st.release.cta.shared.s32 [%0], %1;" ::"r"((unsigned)__cvta_generic_to_shared(p)), "r"(v) : "memory");
}

/// Waits until every block has finished the previous phase. One warp of the
/// block polls global memory (the first to get here); the others watch
/// shared memory, so the grid's pollers are one per block.
__device__ __forceinline__ void waitForPreviousPhase() {
  PersistentState &s = persistentState();
  const int phase = s.phase;
  if (phase == 0 || loadAcquireShared(&s.released) >= phase)
    return;
  const unsigned mask = __activemask();
  const bool leader = (int)(threadIdx.x % kWarpSize) == __ffs(mask) - 1;
  if (leader) {
    if (atomicMax(&s.polling, phase) < phase) {
      const unsigned *done = s.counters + s.phases + phase - 1;
      while (loadAcquire(done) == 0) {
      }
      storeReleaseShared(&s.released, phase);
    } else {
      while (loadAcquireShared(&s.released) < phase) {
      }
    }
  }
  __syncwarp(mask);
}

/// `counters`: 2 x `phases` words, zero.
__device__ __forceinline__ void startPersistent(unsigned *counters, int phases) {
  PersistentState &s = persistentState();
  if (threadIdx.x == 0) {
    s.counters = counters;
    s.phases = phases;
    s.released = 0;
    s.polling = 0;
  }
}

__device__ __forceinline__ void beginPhase(int phase) {
  __syncthreads(); // no thread still reads the previous phase's state
  if (threadIdx.x == 0)
    persistentState().phase = phase;
}

/// Makes the block work on launch block `flat` (x fastest) of a grid `gridX` wide.
__device__ __forceinline__ void setBlock(int flat, int gridX) {
  __syncthreads(); // the previous launch block is done
  PersistentState &s = persistentState();
  if (threadIdx.x == 0) {
    s.blockX = flat % gridX;
    s.blockY = flat / gridX;
    s.gridX = gridX;
  }
  __syncthreads();
}

/// Counts the block as done with `phase`; the last block to finish it
/// releases the waiters (a flag of its own, so that polls and counts do not
/// share a word).
__device__ __forceinline__ void endPhase(int phase) {
  __syncthreads(); // the block's writes of the phase happen before its count
  if (threadIdx.x != 0)
    return;
  PersistentState &s = persistentState();
  unsigned *counters = s.counters;
  unsigned before;
  asm volatile("atom.add.acq_rel.gpu.global.u32 %0, [%1], 1;" : "=r"(before) : "l"(counters + phase) : "memory");
  if (before + 1 != gridDim.x)
    return;
  if (phase + 1 < s.phases) {
    asm volatile("st.release.gpu.global.u32 [%0], 1;" ::"l"(counters + s.phases + phase) : "memory");
  } else {
    // Every block is past every wait: ready for the next launch.
    for (int p = 0; p < 2 * s.phases; ++p)
      counters[p] = 0;
  }
}

} // namespace detail
#endif // LLAMAC_DEVICE_CODE && LLAMAC_PERSISTENT

} // namespace llamac
