//===- codegen/kernels/common.cuh - What every llamac kernel template uses -===//
//
// The kernel templates are real CUDA C++ headers. The code generator emits a
// small `extern "C" __global__` wrapper per IR op that includes the op's file
// and calls its template with the sizes baked in; NVRTC compiles the result.
//
// Conventions shared by all templates:
//   - Activations are f32. Weights are float, llamac::f16 or llamac::bf16
//     (the IR's dtype names; a wrapper spells the template argument exactly
//     so); they are widened to f32 and every sum is accumulated in f32.
//   - Matrices are row-major [N][K]: y[n] = sum_k x[k] * W[n][k].
//   - Sizes are template parameters; scalars that change per step (the token,
//     the position) are read from device memory, so a captured CUDA graph can
//     be replayed unchanged.
//   - Every pointer is 16-byte aligned (cuMemAlloc gives 256; the memory
//     planner and the weights file align every tensor to at least 16).
//   - Constants at namespace scope are [[maybe_unused]]: a plan inlines these
//     files into one translation unit per kernel, where another kernel's
//     constant goes unused and NVRTC would warn (warning 177).
//   - Math is precise (no fast math), written to match the CPU executor to
//     1e-5 relative: sqrtf and '/' are IEEE, expf/sinf/cosf are within 2 ulp.
//
// The launch shape of each template is a constexpr function in namespace
// llamac::launch. Those parts compile as plain C++ as well, so the code
// generator and the tests include these files to compute grids; everything
// else is device code, compiled only by a CUDA compiler.
//
//===----------------------------------------------------------------------===//
#pragma once

#if defined(__CUDACC__)
#define LLAMAC_DEVICE_CODE 1
#define LLAMAC_HOST_DEVICE __host__ __device__
#else
#define LLAMAC_DEVICE_CODE 0
#define LLAMAC_HOST_DEVICE
#endif

/// Set to 1 before the first include by the persistent kernel's source only
/// (persistent.cuh).
#ifndef LLAMAC_PERSISTENT
#define LLAMAC_PERSISTENT 0
#endif

/// Thread block clusters (sm_90): blocks of one cluster run at once on the
/// SMs of one GPC and read each other's shared memory. Not inside the
/// persistent kernel, whose blocks take the launches' blocks in turn. A
/// kernel whose template uses them declares its cluster shape with
/// LLAMAC_CLUSTER_DIMS (nothing where there are none), and the template
/// falls back to a form without them (attention.cuh).
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 && !LLAMAC_PERSISTENT
#define LLAMAC_CLUSTERS 1
#define LLAMAC_CLUSTER_DIMS(x, y, z) __cluster_dims__(x, y, z)
#else
#define LLAMAC_CLUSTERS 0
#define LLAMAC_CLUSTER_DIMS(x, y, z)
#endif

namespace llamac {

/// 16-bit weight elements, as stored in the weights file. The kernels only
/// widen them to f32, so they are plain bit patterns here rather than
/// cuda_fp16.h's __half and cuda_bf16.h's __nv_bfloat16: NVRTC then needs no
/// CUDA toolkit headers, and llamarun can recompile a plan's kernels on a
/// machine that has libnvrtc but no toolkit.
struct f16 {
  unsigned short bits;
};
struct bf16 {
  unsigned short bits;
};

namespace launch {

/// The grid (x, y), the threads per block and the dynamic shared memory of one
/// kernel launch. Blocks are one-dimensional.
struct Shape {
  unsigned gridX = 1;
  unsigned gridY = 1;
  unsigned blockX = 1;
  unsigned dynamicSharedBytes = 0;
  /// The kernel's blocks loop over the gridX blocks of work (blockX(),
  /// stepping by gridX()), so the runtime may launch fewer (gemv.cuh).
  bool gridStride = false;
};

LLAMAC_HOST_DEVICE constexpr unsigned ceilDiv(unsigned a, unsigned b) { return (a + b - 1) / b; }

[[maybe_unused]] constexpr int kWarpSize = 32;

/// Threads per block of the simple element-wise kernels (one element each).
[[maybe_unused]] constexpr int kElementwiseThreads = 256;

LLAMAC_HOST_DEVICE constexpr Shape elementwise(unsigned elements) {
  return {ceilDiv(elements, kElementwiseThreads), 1, kElementwiseThreads, 0};
}

} // namespace launch

#if LLAMAC_DEVICE_CODE
namespace detail {

using launch::kWarpSize;

/// IEEE half to float: exact, one instruction.
__device__ __forceinline__ float halfBitsToFloat(unsigned short bits) {
  float result;
  asm("cvt.f32.f16 %0, %1;" : "=f"(result) : "h"(bits));
  return result;
}

/// bfloat16 is the high half of a float: exact.
__device__ __forceinline__ float bfloat16BitsToFloat(unsigned short bits) {
  return __uint_as_float((unsigned)bits << 16);
}

__device__ __forceinline__ float toFloat(float v) { return v; }
__device__ __forceinline__ float toFloat(f16 v) { return halfBitsToFloat(v.bits); }
__device__ __forceinline__ float toFloat(bf16 v) { return bfloat16BitsToFloat(v.bits); }

/// Weight element types, 16 bytes at a time.
template <typename T> struct Vec16 {
  static constexpr int kElems = 16 / sizeof(T);
};

/// One 16-byte load of read-only data (weights); `p` must be 16-byte aligned.
template <typename T> __device__ __forceinline__ uint4 load16(const T *p) {
  return __ldg(reinterpret_cast<const uint4 *>(p));
}

/// load16 for a load that must stay on its side of waitForPreviousKernel()
/// (warpDots' first batch). ptxas moves ld.global.nc (__ldg) loads that the
/// PTX issues before griddepcontrol.wait (ACQBULK in SASS) to after it in some
/// kernels (the matmul_add and matmul_argmax ones, bench/NOTES.md, session 6),
/// and keeps them before it in others; a cosmetic change to the code moved
/// them, and NVVM hoists such loads from after the wait to before it (session
/// 8). A plain global load not kept in L1, in asm volatile, stays where the
/// PTX has it, on either side of the wait, in every kernel checked.
template <typename T> __device__ __forceinline__ uint4 load16Pinned(const T *p) {
  uint4 v;
  asm volatile("ld.global.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

/// Widens 16 bytes of packed T to f32.
__device__ __forceinline__ void widen(uint4 raw, float (&out)[4], float) {
  out[0] = __uint_as_float(raw.x);
  out[1] = __uint_as_float(raw.y);
  out[2] = __uint_as_float(raw.z);
  out[3] = __uint_as_float(raw.w);
}
__device__ __forceinline__ void widen(uint4 raw, float (&out)[8], f16) {
  const unsigned words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    out[2 * i] = halfBitsToFloat((unsigned short)(words[i] & 0xffffu));
    out[2 * i + 1] = halfBitsToFloat((unsigned short)(words[i] >> 16));
  }
}
__device__ __forceinline__ void widen(uint4 raw, float (&out)[8], bf16) {
  const unsigned words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    out[2 * i] = __uint_as_float(words[i] << 16);
    out[2 * i + 1] = __uint_as_float(words[i] & 0xffff0000u);
  }
}

/// Stores an f32 value as a KV cache element, rounding to nearest even as the
/// CPU executor does (runtime/Half.h).
__device__ __forceinline__ void storeAs(float v, float *p) { *p = v; }
__device__ __forceinline__ void storeAs(float v, f16 *p) {
  unsigned short bits;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(bits) : "f"(v));
  p->bits = bits;
}
__device__ __forceinline__ void storeAs(float v, bf16 *p) {
  unsigned short bits;
  asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(bits) : "f"(v));
  p->bits = bits;
}

/// Four consecutive KV cache elements as stored: a float4, or a uint2 of four
/// 16-bit values.
template <typename T> struct Raw4 {
  using type = uint2;
};
template <> struct Raw4<float> {
  using type = float4;
};

/// Four consecutive KV cache elements as stored; `p` must be aligned to their
/// size (16 bytes for float, 8 for the 16-bit types).
template <typename T> __device__ __forceinline__ typename Raw4<T>::type loadRaw4(const T *p) {
  return *reinterpret_cast<const typename Raw4<T>::type *>(p);
}

/// What loadRaw4 returned, as f32.
__device__ __forceinline__ float4 widen4(float4 raw, float) { return raw; }
template <typename T> __device__ __forceinline__ float4 widen4(uint2 raw, T) {
  return make_float4(toFloat(T{(unsigned short)(raw.x & 0xffffu)}), toFloat(T{(unsigned short)(raw.x >> 16)}),
                     toFloat(T{(unsigned short)(raw.y & 0xffffu)}), toFloat(T{(unsigned short)(raw.y >> 16)}));
}

/// Four consecutive KV cache elements as f32 (alignment as for loadRaw4).
template <typename T> __device__ __forceinline__ float4 load4(const T *p) { return widen4(loadRaw4(p), T()); }

/// The block index a template works on. A kernel of its own uses blockIdx;
/// inside the persistent kernel (persistent.cuh), each block takes the
/// launches' blocks in turn and this is the one it is on.
__device__ __forceinline__ int blockX();
__device__ __forceinline__ int blockY();
/// The step's position, read before the dependency wait (the RoPE in
/// matmul_qkv_rope_kv, attention): through L2, never an L1 line of an
/// earlier step. The kernel that last wrote it has finished, or in a chained
/// step the classifier's block 0 stored and fenced it before it let the next
/// kernel launch (advance.cuh).
__device__ __forceinline__ int positionBeforeWait(const int *pos) { return __ldcg(pos); }

/// Blocks in x: the kernel's, or inside the persistent kernel the launch's.
__device__ __forceinline__ int gridX();

/// The first element of an element-wise kernel's thread.
__device__ __forceinline__ int elementIndex() { return blockX() * launch::kElementwiseThreads + (int)threadIdx.x; }

/// Programmatic dependent launch (sm_90): a generated kernel lets the next
/// kernel of the graph launch (at its start; matmul kernels with 16-bit
/// weights once their preloads are issued, gemv.cuh; the first kernel of a
/// step and the chained classifier's block 0 only after their wait), and
/// waits until the kernel before it has finished and its writes are
/// visible. Before its wait a kernel may only read what no earlier kernel of
/// its step writes (weights, the position). Only a block's first
/// launch_dependents counts. Inside the persistent kernel, the wait is for
/// the previous phase instead (persistent.cuh).
///
/// Only weights may be read through `const T *__restrict__` pointers: NVVM
/// turns such reads into invariant loads (ld.global.nc), which it may move
/// above the asm of the wait, "memory" clobber or not. An activation read
/// that way was once hoisted above the wait in the scalar (odd K) gemv path,
/// and read the previous kernel's output before it was written.
/// KernelSources.NoRestrictOnActivations checks every kernel file. On older GPUs, and
/// when the launch has no programmatic dependency, both are no-ops.
///
/// A timing experiment, with NVRTC options the runtime takes from
/// LLAMAC_NVRTC_OPTIONS (CudaEngine.cpp): -DLLAMAC_EXPERIMENT_LATE_TRIGGER=1
/// lets the next kernel launch only after the wait (correct, and slower:
/// bench/NOTES.md, session 5).
__device__ __forceinline__ void allowDependentLaunch() {
#if __CUDA_ARCH__ >= 900 && !LLAMAC_PERSISTENT && !LLAMAC_EXPERIMENT_LATE_TRIGGER
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

#if LLAMAC_PERSISTENT
__device__ __forceinline__ void waitForPreviousPhase();
__device__ __forceinline__ void waitForPreviousKernel() { waitForPreviousPhase(); }
#else
__device__ __forceinline__ int blockX() { return (int)blockIdx.x; }
__device__ __forceinline__ int blockY() { return (int)blockIdx.y; }
__device__ __forceinline__ int gridX() { return (int)gridDim.x; }

/// A timing aid, compiled in only when the runtime asks for it
/// (LLAMAC_TIMELINE=file, CudaEngine.cpp, read by bench/timeline.py): it
/// recompiles every kernel with -DLLAMAC_TIMELINE=<address of a device
/// buffer>, -DLLAMAC_TIMELINE_CAPACITY=<records> and
/// -DLLAMAC_TIMELINE_KERNEL=<the kernel's index in the plan>. Thread 0 of
/// each block then takes a record (a counter in the buffer's first word) and
/// stamps %globaltimer when it reaches the wait, when the wait returns and at
/// the kernel's end (KernelTimeline, after a block barrier), with the launch's
/// %gridid, the block and its SM. A block's first wait only is recorded.
struct TimelineRecord {
  unsigned long long grid, waits, released, exits;
  unsigned kernel, block, sm;
  unsigned mark; // the low 32 bits of %globaltimer at timelineMark(LLAMAC_TIMELINE_MARK), or 0
};
// The layout CudaEngine.cpp (kTimelineRecordBytes) and bench/timeline.py (RECORD) read.
static_assert(sizeof(TimelineRecord) == 48, "CudaEngine.cpp and bench/timeline.py read 48-byte records");
#ifdef LLAMAC_TIMELINE
__shared__ unsigned timelineSlot; // the block's record + 1; 0 before its first wait
__device__ __forceinline__ unsigned long long globalTimer() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}
__device__ __forceinline__ TimelineRecord *timelineRecord(unsigned slot) {
  return reinterpret_cast<TimelineRecord *>(LLAMAC_TIMELINE + 64) + slot;
}
#endif

/// LetNextLaunch = false: never the late trigger's launch here (advance.cuh's
/// advance_position: block 0 stores pos after this wait; under the late
/// trigger, its template's own wait later lets the next kernel launch).
template <bool LetNextLaunch = true> __device__ __forceinline__ void waitForPreviousKernel() {
#ifdef LLAMAC_TIMELINE
  unsigned long long waits = globalTimer();
  unsigned slot = ~0u;
  if (threadIdx.x == 0 && timelineSlot == 0)
    slot = atomicAdd(reinterpret_cast<unsigned *>(LLAMAC_TIMELINE), 1u);
#endif
#if __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
#if __CUDA_ARCH__ >= 900 && LLAMAC_EXPERIMENT_LATE_TRIGGER
  if (LetNextLaunch)
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
#ifdef LLAMAC_TIMELINE
  if (slot != ~0u) {
    timelineSlot = slot + 1;
    if (slot < LLAMAC_TIMELINE_CAPACITY) {
      TimelineRecord *r = timelineRecord(slot);
      unsigned long long grid;
      unsigned sm;
      asm volatile("mov.u64 %0, %%gridid;" : "=l"(grid));
      asm volatile("mov.u32 %0, %%smid;" : "=r"(sm));
      r->grid = grid;
      r->waits = waits;
      r->released = globalTimer();
      r->kernel = LLAMAC_TIMELINE_KERNEL;
      r->block = blockIdx.x + blockIdx.y * gridDim.x;
      r->sm = sm;
    }
  }
#endif
}
#endif

#if LLAMAC_CLUSTERS
/// The block's rank in its cluster.
__device__ __forceinline__ unsigned clusterRank() {
  unsigned rank;
  asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(rank));
  return rank;
}

/// The two halves of a barrier over every thread of the cluster, with
/// release and acquire semantics: what a thread wrote before its arrive is
/// visible after anyone's wait. Every thread of every block of the cluster
/// must arrive, and wait before it arrives again or exits; between the two
/// it may work.
__device__ __forceinline__ void clusterArrive() {
  asm volatile("barrier.cluster.arrive.release.aligned;" ::: "memory");
}
__device__ __forceinline__ void clusterWait() {
  asm volatile("barrier.cluster.wait.acquire.aligned;" ::: "memory");
}

/// The shared-memory address of `p` (a variable in shared memory).
__device__ __forceinline__ unsigned sharedAddress(const void *p) {
  unsigned address;
  asm("{ .reg .u64 a; cvta.to.shared.u64 a, %1; cvt.u32.u64 %0, a; }" : "=r"(address) : "l"(p));
  return address;
}

/// The address of this block's shared variable `p` in the cluster's block
/// `rank`, for storeToCluster.
__device__ __forceinline__ unsigned clusterAddress(const void *p, unsigned rank) {
  unsigned remote;
  asm("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"(sharedAddress(p)), "r"(rank));
  return remote;
}

/// A barrier object in shared memory (mbarrier) that one thread arrives on
/// and that counts bytes stored into this block by other blocks of the
/// cluster (storeToCluster): it is initialized for one arrival, and the
/// cluster may use it after a cluster barrier.
__device__ __forceinline__ void initArrivalBarrier(unsigned long long *barrier) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;\n\t"
               "fence.mbarrier_init.release.cluster;" ::"r"(sharedAddress(barrier))
               : "memory");
}
/// The one arrival, expecting `bytes` to be stored.
__device__ __forceinline__ void arriveExpectingBytes(unsigned long long *barrier, unsigned bytes) {
  asm volatile("{ .reg .b64 state; mbarrier.arrive.expect_tx.shared::cta.b64 state, [%0], %1; }" ::"r"(
                   sharedAddress(barrier)),
               "r"(bytes)
               : "memory");
}
/// Waits until the arrival and all expected bytes are in (the barrier's
/// first phase); the bytes are then visible to the thread.
__device__ __forceinline__ void waitForBytes(unsigned long long *barrier) {
  const unsigned address = sharedAddress(barrier);
  unsigned done = 0;
  while (!done)
    asm volatile("{ .reg .pred p; mbarrier.try_wait.parity.acquire.cluster.shared::cta.b64 p, [%1], 0; "
                 "selp.u32 %0, 1, 0, p; }"
                 : "=r"(done)
                 : "r"(address)
                 : "memory");
}
/// Stores v at `remote` (clusterAddress) in another block of the cluster and
/// counts its 4 bytes on that block's barrier `remoteBarrier` (also a
/// clusterAddress): one way, nothing to wait for here.
__device__ __forceinline__ void storeToCluster(unsigned remote, float v, unsigned remoteBarrier) {
  asm volatile("st.async.shared::cluster.mbarrier::complete_tx::bytes.b32 [%0], %1, [%2];" ::"r"(remote),
               "r"(__float_as_uint(v)), "r"(remoteBarrier)
               : "memory");
}
#endif

/// A timing aid inside a template: with the timeline compiled in and
/// -DLLAMAC_TIMELINE_MARK=n, thread 0 stamps the block's record at mark n
/// (bench/timeline.py: how long after the release the block got there),
/// once `ready` (a value the mark should wait for, such as a sum of loaded
/// data) is computed.
__device__ __forceinline__ void timelineMark(int n, float ready = 0.0f) {
#if defined(LLAMAC_TIMELINE) && defined(LLAMAC_TIMELINE_MARK) && !LLAMAC_PERSISTENT
  // The test of `ready` (never that NaN) makes the branch, and so the
  // stamp, wait for it.
  if (n == LLAMAC_TIMELINE_MARK && threadIdx.x == 0 && timelineSlot != 0 &&
      timelineSlot - 1 < LLAMAC_TIMELINE_CAPACITY && __float_as_uint(ready) != 0x7fc00001u)
    timelineRecord(timelineSlot - 1)->mark = (unsigned)globalTimer();
#endif
}

/// The first statement of every generated kernel's wrapper: with the
/// timeline compiled in, the block's record is not taken yet at its start,
/// and its end is stamped when the wrapper returns; else nothing.
struct KernelTimeline {
#if defined(LLAMAC_TIMELINE) && !LLAMAC_PERSISTENT
  __device__ KernelTimeline() {
    if (threadIdx.x == 0)
      timelineSlot = 0;
  }
  __device__ ~KernelTimeline() {
    __syncthreads();
    if (threadIdx.x == 0 && timelineSlot != 0 && timelineSlot - 1 < LLAMAC_TIMELINE_CAPACITY)
      timelineRecord(timelineSlot - 1)->exits = globalTimer();
  }
#else
  __device__ KernelTimeline() {} // user-provided: an unused variable of it is no warning
#endif
};

/// Four activations; `p` must be 16-byte aligned.
__device__ __forceinline__ float4 loadFloat4(const float *p) {
  return *reinterpret_cast<const float4 *>(p);
}

__device__ __forceinline__ float warpSum(float v) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2)
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__device__ __forceinline__ float warpMax(float v) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2)
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

/// Sum over the first `Width` lanes of each aligned group of `Width` lanes
/// (Width a power of two <= 32); every lane of the group gets the sum.
template <int Width> __device__ __forceinline__ float groupSum(float v) {
#pragma unroll
  for (int offset = Width / 2; offset > 0; offset /= 2)
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

/// Sum over the block; every thread must call it and gets the result.
template <int Threads> __device__ __forceinline__ float blockSum(float v) {
  static_assert(Threads % kWarpSize == 0 && Threads <= 1024, "whole warps, at most 1024 threads");
  constexpr int kWarps = Threads / kWarpSize;
  __shared__ float partial[kWarps];
  __shared__ float total;
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  v = warpSum(v);
  if (lane == 0)
    partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float s = lane < kWarps ? partial[lane] : 0.0f;
    s = warpSum(s);
    if (lane == 0)
      total = s;
  }
  __syncthreads();
  float result = total;
  __syncthreads(); // a later call may reuse partial[] and total
  return result;
}

__device__ __forceinline__ float negativeInfinity() { return __int_as_float(0xff800000); }

/// 1 / sqrt(mean(x^2) + eps), the RMSNorm scale, computed by the whole block in
/// the CPU executor's order of operations: ss / K, + eps, sqrtf, 1 / that.
template <int K, int Threads>
__device__ __forceinline__ float rmsInverse(const float *x, float eps) {
  float ss = 0.0f;
  for (int k = threadIdx.x; k < K; k += Threads)
    ss = fmaf(x[k], x[k], ss);
  ss = blockSum<Threads>(ss);
  return 1.0f / sqrtf(ss / (float)K + eps);
}

} // namespace detail
#endif // LLAMAC_DEVICE_CODE

} // namespace llamac
