//===- codegen/kernels/gemv.cuh - The matrix-vector core of the matmul ops -===//
//
// Not an op: the warp-level dot products that matmul, matmul_add,
// matmul_swiglu, matmul_qkv, matmul_qkv_rope_kv and matmul_argmax share.
//
// Batch-1 decode is a matrix-vector product, bound by reading W once. Design:
//   - one warp computes whole rows (R rows at once when an op needs several
//     dot products with the same x: SwiGLU's W1 and W3 rows, RoPE's row pairs);
//   - W is read with 16-byte loads (4 floats or 8 halves), consecutive lanes
//     reading consecutive 16 bytes, kUnroll loads per row in flight per lane
//     before the first use;
//   - x is read as float4 from global memory: it is small (K floats) and stays
//     in L1/L2, shared by all warps of the SM;
//   - the partial sums meet through a warp shuffle reduction.
// The vector path needs every row start 16-byte aligned, which holds when
// K * sizeof(T) is a multiple of 16 (and W's base is aligned). Otherwise, for
// awkward sizes such as K = 250, the scalar path reads one element per lane.
//
// Split-K within a block: Split warps (2, 4 or 8) of one block may share a
// warp task, each taking every Split-th 16-byte step of the row, and add their
// sums through shared memory in a fixed order (deterministic). It pays for
// small one-row-per-task matrices, whose grid is otherwise a block or less
// per SM (768x768 f32: 96 blocks); large ones already keep the memory system
// busy and only lose (bench/NOTES.md, session 3: a sweep of every split).
// launch::gemvSplit picks it from the shape.
//
// Launch shape: kGemvThreads threads (kGemvWarps warps) per block, Split
// warps per warp task, so gemv(tasks, split) = ceil(tasks * split / 8)
// blocks of 256 threads. The kernels loop over their tasks (Shape::gridStride):
// the runtime may launch fewer blocks, each warp group then taking every
// gemvTaskStride()-th task. A grid that fits on the GPU at once lets the next
// kernel launch (and load its weights) while this one still runs, instead of
// once this one's last wave has started.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "common.cuh"

namespace llamac {
namespace launch {

[[maybe_unused]] constexpr int kGemvThreads = 256;
[[maybe_unused]] constexpr int kGemvWarps = kGemvThreads / kWarpSize;

/// 16-byte loads each lane issues per row before using the first. A timing
/// experiment may recompile the kernels with another value
/// (LLAMAC_NVRTC_OPTIONS=-DLLAMAC_EXPERIMENT_GEMV_UNROLL=4); the code
/// generator's split rule (gemvSplit) keeps using 8.
#ifndef LLAMAC_EXPERIMENT_GEMV_UNROLL
#define LLAMAC_EXPERIMENT_GEMV_UNROLL 8
#endif
[[maybe_unused]] constexpr int kGemvUnroll = LLAMAC_EXPERIMENT_GEMV_UNROLL;

/// Matrices up to this size may split their rows over warps.
[[maybe_unused]] constexpr unsigned long long kGemvSplitMaxBytes = 16ull << 20;

/// Larger one-row matrices keep one warp per row up to this many loads per lane.
[[maybe_unused]] constexpr unsigned kGemvOneWarpMaxLoads = 32;

/// Smaller ones take fewer warps per row where that still gives this many
/// blocks and kGemvUnroll loads per lane: a grid of many more blocks fills
/// every SM's threads while it waits for the kernel before it, and the kernel
/// after it can load nothing until it is done.
[[maybe_unused]] constexpr unsigned kGemvSplitMinBlocks = 192;

/// 16-byte loads per row of `k` elements of `elementBytes` bytes, or `k`
/// scalar loads where rows are not 16-byte multiples (warpDots' two paths).
LLAMAC_HOST_DEVICE constexpr unsigned gemvRowLoads(unsigned k, unsigned elementBytes) {
  return (k * elementBytes) % 16 == 0 ? k * elementBytes / 16 : k;
}

/// Warps per warp task for `n` rows of `k` elements of `elementBytes` bytes,
/// `rowsPerTask` rows per task (2 for SwiGLU's and RoPE's row pairs), from H100
/// measurements (bench/NOTES.md, session 3):
///   - one-row tasks of matrices up to 16 MB: 4 warps when each lane would
///     otherwise issue 8 or more loads of a row, else 2 (a sweep of every
///     split on stories110M and Llama-3.2-1B; their grids are small), but the
///     fewest that give kGemvSplitMinBlocks blocks and kGemvUnroll loads per
///     lane (Llama-3.2-1B wo: 1, not 4; stories110M f32 w2: 2, not 4; measured
///     in the decode graph, bench/NOTES.md, session 5);
///   - row pairs up to 16 MB: 1 (splitting them lost every time);
///   - larger one-row matrices: 1 while each lane issues at most
///     kGemvOneWarpMaxLoads loads of a row (a sweep of the Llama-3-8B and
///     Llama-3.2-1B shapes: wo, w2 of 1B and the classifiers lost 1-2 us
///     each to a split), else as larger row pairs;
///   - larger row pairs: the fewest warps that keep each lane within one
///     batch of kGemvUnroll loads (Llama-3-8B: 174 tok/s with it, 158 with
///     no split at all; its w2, 56 loads per lane, goes this way too).
LLAMAC_HOST_DEVICE constexpr unsigned gemvSplit(unsigned n, unsigned k, unsigned elementBytes,
                                                unsigned rowsPerTask) {
  const unsigned long long bytes = (unsigned long long)n * k * elementBytes;
  const unsigned loads = gemvRowLoads(k, elementBytes);
  if (bytes <= kGemvSplitMaxBytes) {
    if (rowsPerTask != 1)
      return 1;
    const unsigned most = ceilDiv(loads, kWarpSize) >= kGemvUnroll ? 4 : 2;
    for (unsigned split = 1; split < most; split *= 2)
      if (ceilDiv(n * split, kGemvWarps) >= kGemvSplitMinBlocks && ceilDiv(loads, kWarpSize * split) >= kGemvUnroll)
        return split;
    return most;
  }
  if (rowsPerTask == 1 && ceilDiv(loads, kWarpSize) <= kGemvOneWarpMaxLoads)
    return 1;
  unsigned split = 1;
  while (split < 8 && ceilDiv(loads, kWarpSize * split) > kGemvUnroll)
    split *= 2;
  return split;
}

/// How many of a warp's first kGemvUnroll loads per lane of a row are issued
/// before the dependency wait (a preload: weights do not depend on the
/// kernel before, so their latency overlaps its tail), pinned there
/// (load16Pinned, which ptxas does not move); the rest of the first batch
/// is issued right after the wait. All of them when they are the whole row
/// (one batch per lane), else none. Measured side by side on the H100
/// (bench/NOTES.md, sessions 7 and 8), against invariant loads that ptxas
/// placed: stories110M f32 +2.4 to +2.9 points, f16 +1.0 to +1.4 (every
/// matmul one batch; ptxas had moved the matmul_add and classifier loads
/// after the wait); Llama-3.2-1B +1.8 to +2.0. Where a row takes several
/// batches (1B w2: 32 loads per lane), none before the wait measured 82.2%,
/// one 81.2-81.3%, two 79.8%, four 80.1%, the whole first batch 79.8%. A timing
/// experiment may force the count for every kernel
/// (LLAMAC_NVRTC_OPTIONS=-DLLAMAC_EXPERIMENT_PINNED_LOADS=n).
LLAMAC_HOST_DEVICE constexpr unsigned gemvPinnedLoads(unsigned k, unsigned elementBytes, unsigned split) {
#ifdef LLAMAC_EXPERIMENT_PINNED_LOADS
  return LLAMAC_EXPERIMENT_PINNED_LOADS;
#else
  return ceilDiv(gemvRowLoads(k, elementBytes), kWarpSize * split) <= kGemvUnroll ? kGemvUnroll : 0;
#endif
}

/// Whether a matmul kernel whose weights have `elementBytes`-byte elements
/// lets the next kernel launch only once its warps have issued their
/// preloads (the block's first warp to get there triggers it; only a block's
/// first launch_dependents counts), before the wait, instead of at its
/// start. Its weight loads are then in the memory system's queues before
/// the next kernel's. Where no loads are pinned before the wait (rows of
/// several batches, gemvPinnedLoads), that is warpDots' start. Measured side
/// by side on the H100 (bench/NOTES.md, session 10), against the start:
/// stories110M f16 45.9-46.5 -> 48.4-48.5%, Llama-3.2-1B bf16 82.4-82.6 ->
/// 83.4-83.5%, but stories110M f32 71.8-72.1 -> 67.7% (so f32 at the start).
/// Waiting for the preloads to arrive first was worse than either (f16
/// 45.1-45.3%, f32 62.0%). Without the L2 prefetch (removed later in the
/// session) f32 still prefers its start: 75.0-75.1% against 74.4-74.6%. A
/// timing experiment may force it for every matmul kernel
/// (LLAMAC_NVRTC_OPTIONS=-DLLAMAC_EXPERIMENT_LAUNCH_NEXT_AFTER_PRELOADS=0 or
/// 1).
LLAMAC_HOST_DEVICE constexpr bool gemvLaunchesNextAfterPreloads([[maybe_unused]] unsigned elementBytes) {
#ifdef LLAMAC_EXPERIMENT_LAUNCH_NEXT_AFTER_PRELOADS
  return LLAMAC_EXPERIMENT_LAUNCH_NEXT_AFTER_PRELOADS != 0;
#else
  return elementBytes == 2;
#endif
}

/// Blocks for `warpTasks` tasks (rows, or row pairs) of `split` warps each:
/// one task per warp group, or fewer blocks looping over the tasks.
LLAMAC_HOST_DEVICE constexpr Shape gemv(unsigned warpTasks, unsigned split) {
  return {ceilDiv(warpTasks * split, kGemvWarps), 1, kGemvThreads, 0, true};
}

} // namespace launch

#if LLAMAC_DEVICE_CODE
namespace detail {

using launch::kGemvUnroll;

/// The matmul kernels' start (their wrappers call it where others call
/// allowDependentLaunch): lets the next kernel launch now, unless warpDots
/// does once it has issued its preloads of weights `w`
/// (launch::gemvLaunchesNextAfterPreloads).
template <typename T> __device__ __forceinline__ void allowDependentLaunchAtStart(const T *) {
  if constexpr (!launch::gemvLaunchesNextAfterPreloads(sizeof(T)))
    allowDependentLaunch();
}

/// The first warp task this warp works on (a row, or a row pair).
template <int Split> __device__ __forceinline__ int gemvWarpTask() {
  return (blockX() * launch::kGemvWarps + threadIdx.x / kWarpSize) / Split;
}

/// From one of the warp's tasks to its next: the tasks the launch's blocks
/// cover at once. With the full grid (one task per warp group) the first task
/// is the only one; the runtime may launch fewer blocks (Shape::gridStride).
template <int Split> __device__ __forceinline__ int gemvTaskStride() {
  return gridX() * launch::kGemvWarps / Split;
}

/// Whether this thread holds its task's final sums: lane 0 of the task's
/// first warp.
template <int Split> __device__ __forceinline__ bool gemvLeader() {
  return threadIdx.x % (Split * kWarpSize) == 0;
}

/// 1 / sqrt(ss / K + eps): the RMS scale from the sum of squares, in the CPU
/// executor's order of operations.
template <int K> __device__ __forceinline__ float rmsInverseOfSum(float ss, float eps) {
  return 1.0f / sqrtf(ss / (float)K + eps);
}

/// 1 / sqrt(mean(x^2) + eps), computed by one warp on its own (no block
/// barrier, so warps never wait for one another). x is read 16 bytes at a
/// time with kGemvUnroll loads in flight per lane: a chain of dependent
/// scalar loads here once cost several microseconds per kernel.
template <int K> __device__ __forceinline__ float warpRmsInverse(const float *x, float eps) {
  const int lane = threadIdx.x % kWarpSize;
  float ss = 0.0f;
  if constexpr (K % 4 == 0) {
    constexpr int kVecs = K / 4;
#pragma unroll kGemvUnroll
    for (int v = lane; v < kVecs; v += kWarpSize) {
      const float4 x4 = loadFloat4(x + 4 * v);
      ss = fmaf(x4.x, x4.x, ss);
      ss = fmaf(x4.y, x4.y, ss);
      ss = fmaf(x4.z, x4.z, ss);
      ss = fmaf(x4.w, x4.w, ss);
    }
  } else {
#pragma unroll kGemvUnroll
    for (int k = lane; k < K; k += kWarpSize)
      ss = fmaf(x[k], x[k], ss);
  }
  return rmsInverseOfSum<K>(warpSum(ss), eps);
}

/// Waits for the kernel that wrote x, then returns x's RMS scale (1 without
/// the prologue).
template <int K, bool RmsPrologue> __device__ __forceinline__ float inputScaleAfterWait(const float *x, float eps) {
  waitForPreviousKernel();
  if constexpr (RmsPrologue)
    return warpRmsInverse<K>(x, eps);
  else
    return 1.0f;
}

/// What a matmul template does for a task besides its epilogue, at two points
/// of warpDots: beforeWait(task) once the task's first weight loads are
/// issued, which on the warp's first task is before waitForPreviousKernel(),
/// so it may only read what no earlier kernel of the step writes (weights,
/// the position: common.cuh's positionBeforeWait); afterWait(task) once x
/// may be read, before the sums, to issue loads the epilogue needs so that
/// their latency overlaps the sums'. Both run on every lane of the task's
/// warps. What the epilogue would otherwise compute or load after the sums
/// is then off the kernel's critical path (bench/NOTES.md, session 8: a
/// timeline of the decode step).
struct NoEarlyWork {
  __device__ __forceinline__ void beforeWait(int) {}
  __device__ __forceinline__ void afterWait(int) {}
};

/// warpDots at its task's first batch, once the batch's preloads (of weights
/// of type T) are issued: `early`'s work around the wait, which only the
/// warp's first task (xScale negative) waits at, setting xScale
/// (inputScaleAfterWait<K, Rms>); that task first lets the next kernel
/// launch where launch::gemvLaunchesNextAfterPreloads says so. Returns
/// whether this was the first task.
template <int K, bool Rms, typename T, typename Early>
__device__ __forceinline__ bool startTask(const float *x, float eps, float &xScale, Early &early, int task) {
  if constexpr (launch::gemvLaunchesNextAfterPreloads(sizeof(T))) {
    if (xScale < 0.0f)
      allowDependentLaunch();
  }
  bool first = false;
  early.beforeWait(task);
  if (xScale < 0.0f) {
    first = true;
    xScale = inputScaleAfterWait<K, Rms>(x, eps);
  }
  early.afterWait(task);
  return first;
}

/// dots[r] = sum_k (x[k] * s) * rows[r][k], for R rows of K elements, where
/// s = warpRmsInverse(x) with the RMS prologue, else 1. The Split warps of a
/// task call it together (whole warps); every lane of the task's first warp
/// gets the sums.
///
/// The first loads of every row (launch::gemvPinnedLoads per lane) are
/// issued before waitForPreviousKernel(): weights do not depend on earlier
/// kernels, so their latency overlaps the previous kernel's tail. Only then
/// is x (which the previous kernel wrote) read. Warps that call this need no
/// other wait. `xScale` carries s from a warp's first task to its next ones:
/// negative before the first, which waits and sets it. `early` does task
/// `task`'s early work (NoEarlyWork).
template <int K, typename T, int R, bool RmsPrologue, int Split, typename Early>
__device__ __forceinline__ void warpDots(const float *x, float eps, const T *const (&rows)[R],
                                         float (&dots)[R], float &xScale, Early &early, int task) {
  static_assert(Split == 1 || Split == 2 || Split == 4 || Split == 8, "1, 2, 4 or 8 warps per task");
  constexpr int kStride = Split * kWarpSize; // lanes that share a row
  const int lane = threadIdx.x % kStride;
  float acc[R];
#pragma unroll
  for (int r = 0; r < R; ++r)
    acc[r] = 0.0f;

  if constexpr ((K * sizeof(T)) % 16 == 0) {
    constexpr int kElems = Vec16<T>::kElems;
    constexpr int kVecs = K / kElems;
    constexpr int kPinned = (int)launch::gemvPinnedLoads(K, sizeof(T), Split);
    // With the RMS prologue, a row of one batch per lane and one warp per
    // task, the warp's lanes read all of x once for the sums: the same
    // registers give the sum of squares (for f32 in warpRmsInverse's order),
    // and x is read once after the wait instead of twice.
    constexpr bool kXInRegisters = RmsPrologue && Split == 1 && kVecs <= kStride * kGemvUnroll &&
                                   launch::ceilDiv(kVecs, kStride) * kElems <= 32;
    // acc[r] += sum_e scaledX(e) * (row r's element e of the 16 bytes in raw).
    auto accumulate = [&](const uint4(&raw)[R], auto scaledX) {
#pragma unroll
      for (int r = 0; r < R; ++r) {
        float w[kElems];
        widen(raw[r], w, T());
#pragma unroll
        for (int e = 0; e < kElems; ++e)
          acc[r] = fmaf(scaledX(e), w[e], acc[r]);
      }
    };
    for (int base = 0; base < kVecs; base += kStride * kGemvUnroll) {
      uint4 raw[kGemvUnroll][R];
      // The first batch: kPinned loads per lane before the wait, the rest after it.
      const bool firstBatch = base == 0;
#pragma unroll
      for (int u = 0; u < kGemvUnroll; ++u) {
        const int v = base + u * kStride + lane;
        if (v < kVecs && (!firstBatch || u < kPinned)) {
#pragma unroll
          for (int r = 0; r < R; ++r)
            raw[u][r] = firstBatch ? load16Pinned(rows[r] + (size_t)v * kElems)
                                   : load16(rows[r] + (size_t)v * kElems);
        }
      }
      bool firstTask = false;
      if (firstBatch) {
        firstTask = startTask<K, RmsPrologue && !kXInRegisters, T>(x, eps, xScale, early, task);
        // Plain loads in asm volatile as well: NVVM would hoist invariant
        // ones above the wait, and ptxas then places them as it likes.
#pragma unroll
        for (int u = kPinned; u < kGemvUnroll; ++u) {
          const int v = u * kStride + lane;
          if (v < kVecs) {
#pragma unroll
            for (int r = 0; r < R; ++r)
              raw[u][r] = load16Pinned(rows[r] + (size_t)v * kElems);
          }
        }
      }
      if constexpr (kXInRegisters) {
        float xv[kGemvUnroll][kElems];
        float ss = 0.0f;
#pragma unroll
        for (int u = 0; u < kGemvUnroll; ++u) {
          const int v = base + u * kStride + lane;
          if (v < kVecs) {
#pragma unroll
            for (int e = 0; e < kElems; e += 4) {
              const float4 x4 = loadFloat4(x + (size_t)v * kElems + e);
              xv[u][e] = x4.x;
              xv[u][e + 1] = x4.y;
              xv[u][e + 2] = x4.z;
              xv[u][e + 3] = x4.w;
              ss = fmaf(x4.x, x4.x, ss);
              ss = fmaf(x4.y, x4.y, ss);
              ss = fmaf(x4.z, x4.z, ss);
              ss = fmaf(x4.w, x4.w, ss);
            }
          }
        }
        if (firstTask) // warp-uniform
          xScale = rmsInverseOfSum<K>(warpSum(ss), eps);
        timelineMark(11, xScale); // x read and its RMS scale known
#pragma unroll
        for (int u = 0; u < kGemvUnroll; ++u) {
          const int v = base + u * kStride + lane;
          if (v < kVecs) {
            accumulate(raw[u], [&](int e) { return xv[u][e] * xScale; });
          }
        }
      } else {
#pragma unroll
        for (int u = 0; u < kGemvUnroll; ++u) {
          const int v = base + u * kStride + lane;
          if (v < kVecs) {
            float xs[kElems];
#pragma unroll
            for (int e = 0; e < kElems; e += 4) {
              const float4 x4 = loadFloat4(x + (size_t)v * kElems + e);
              xs[e] = x4.x * xScale;
              xs[e + 1] = x4.y * xScale;
              xs[e + 2] = x4.z * xScale;
              xs[e + 3] = x4.w * xScale;
            }
            accumulate(raw[u], [&](int e) { return xs[e]; });
          }
        }
      }
    }
  } else {
    for (int base = 0; base < K; base += kStride * kGemvUnroll) {
      T w[kGemvUnroll][R];
#pragma unroll
      for (int u = 0; u < kGemvUnroll; ++u) {
        const int k = base + u * kStride + lane;
        if (k < K) {
#pragma unroll
          for (int r = 0; r < R; ++r)
            w[u][r] = rows[r][k];
        }
      }
      if (base == 0)
        startTask<K, RmsPrologue, T>(x, eps, xScale, early, task);
#pragma unroll
      for (int u = 0; u < kGemvUnroll; ++u) {
        const int k = base + u * kStride + lane;
        if (k < K) {
          const float xs = x[k] * xScale;
#pragma unroll
          for (int r = 0; r < R; ++r)
            acc[r] = fmaf(xs, toFloat(w[u][r]), acc[r]);
        }
      }
    }
  }

  timelineMark(12, acc[0]); // the lane's products summed: its weights have arrived
#pragma unroll
  for (int r = 0; r < R; ++r)
    dots[r] = warpSum(acc[r]);
  timelineMark(13, dots[0]); // the warp's sums
  if constexpr (Split > 1) {
    // The task's warps meet at a named barrier of their own (ids 1..8; 0 is
    // __syncthreads), so tasks past N, which return early, are not awaited.
    __shared__ float partial[launch::kGemvWarps][R];
    const int warp = threadIdx.x / kWarpSize, first = warp - warp % Split;
    if (threadIdx.x % kWarpSize == 0) {
#pragma unroll
      for (int r = 0; r < R; ++r)
        partial[warp][r] = dots[r];
    }
    asm volatile("bar.sync %0, %1;" ::"r"(1 + first / Split), "r"(kStride) : "memory");
#pragma unroll
    for (int r = 0; r < R; ++r) {
      float sum = partial[first][r];
#pragma unroll
      for (int p = 1; p < Split; ++p)
        sum += partial[first + p][r];
      dots[r] = sum;
    }
    // The task's next call may write partial[] again.
    asm volatile("bar.sync %0, %1;" ::"r"(1 + first / Split), "r"(kStride) : "memory");
  }
}

/// The task loop of the matmul templates: each warp group of Split warps
/// takes tasks gemvWarpTask(), + gemvTaskStride(), ... below `tasks`;
/// rowsOf(task, r) is the task's row r (of R), and epilogue(task, dots) runs
/// on the task's leader lane with its R sums, after `early`'s work for the
/// task (NoEarlyWork).
template <int K, typename T, int R, bool RmsPrologue, int Split, typename RowsOf, typename Epilogue,
          typename Early = NoEarlyWork>
__device__ __forceinline__ void gemvTasks(const float *x, float eps, int tasks, RowsOf rowsOf, Epilogue epilogue,
                                          Early &&early = Early{}) {
  float xScale = -1.0f;
  for (int task = gemvWarpTask<Split>(); task < tasks; task += gemvTaskStride<Split>()) {
    const T *rows[R];
#pragma unroll
    for (int r = 0; r < R; ++r)
      rows[r] = rowsOf(task, r);
    float dots[R];
    warpDots<K, T, R, RmsPrologue, Split>(x, eps, rows, dots, xScale, early, task);
    if (gemvLeader<Split>())
      epilogue(task, dots);
  }
}

} // namespace detail
#endif // LLAMAC_DEVICE_CODE

} // namespace llamac
