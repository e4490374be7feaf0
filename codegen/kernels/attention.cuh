//===- codegen/kernels/attention.cuh - attention: one query over the KV cache ===//
//
// Op:     %o = attention %q, %pos {n_heads H, n_kv_heads KVH, head_size HS, seq_len S}
//         q: [H*HS] f32; pos: i32 in device memory; kcache, vcache: this layer's
//         [S][KVH*HS] of KvT (float, f16 or bf16: the KV cache dtype), widened
//         to f32 as they are read.
// Math:   for each head h, kvh = h / (H / KVH):
//           s[t] = dot(q_h, kcache[t][kvh*HS ...]) / sqrtf(HS), t = 0..pos
//           p = softmax(s) (max subtracted, expf)
//           o_h = sum_t p[t] * vcache[t][kvh*HS ...]
//         output [H*HS].
//
// Reading the cache: a block holds its positions' K and V rows in registers
// (AttentionChunk, for HS and KVH*HS multiples of 4; other shapes read row
// by row), each loaded in one round trip, and loads the rows of earlier steps
// before it waits for the kernel that wrote q (only the row at pos is this
// step's). Attention had cost 4-5 us per layer, chains of dependent loads
// from DRAM; now about 0.3 (stories110M f32, bench/NOTES.md, session 5). When
// one block holds all positions, p is normalized before it weighs V, as the
// CPU executor does.
//
// Two forms; the code generator picks one per model:
//
// 1. attention<H, KVH, HS, S>: one block per head walks all positions, its
//    scores in static shared memory (S floats, so S <= kAttentionMaxSeqLen).
//    Launch: launch::attention(H): H blocks of 256 threads. Best for short
//    contexts, where the cache is small and one launch is all it takes.
//
// 2. Flash-decoding, for long contexts: attention_split<H, KVH, HS, S, KvT,
//    Parts> splits a head's positions into spans of 128 * Parts, each over
//    Parts blocks: block r of a span takes every Parts-th position from its
//    r-th on (at most 128, in registers), so the history of even a short
//    context loads on Parts SMs at once. A block's result is its max m, sum
//    l = sum exp(s - m) and unnormalized sum exp(s - m) v.
//    - On sm_90 a span's blocks are a thread block cluster (the wrapper's
//      LLAMAC_CLUSTER_DIMS; not inside the persistent kernel): the others
//      store their m, l and sums straight into the first block's shared
//      memory (st.async, counted on an mbarrier there) and exit; the first
//      merges them. A pull through
//      distributed shared memory between two cluster barriers cost 2.4 us;
//      this one-way hand-over about 0.3 (bench/NOTES.md, session 9).
//    - Spans (or, without clusters, blocks) then meet in global memory: each
//      writes its m, l and sums to a scratch buffer, and the last of a head
//      to finish (a counter per head, in memory no other kernel uses)
//      merges them: M = max m_i, o = sum_i acc_i e^(m_i-M) / sum_i l_i
//      e^(m_i-M), and resets the counter for the next step. With one unit
//      (with clusters one span, pos < 128 * Parts; without, one block, pos
//      0) it writes o directly. One kernel, so no second launch.
//    launch::attentionParts(H) picks Parts. Launch:
//    launch::attentionSplit(H, S, Parts): H x ceil(S / (128 * Parts)) * Parts
//    blocks of 256 (spans past pos return at once).
//    Scratch: launch::attentionPartialFloats(H, HS, S, Parts) floats; state:
//    launch::attentionCounters(H) zeroed 32-bit counters.
//
// Bytes:  2*(pos+1)*KVH*HS*4 (K and V rows up to pos; each K/V row is read
//         once per query head that shares it, from L2 after the first) +
//         2*H*HS*4. stories110M at pos 1023: 6.3 MB per layer.
//
// Wrappers the code generator emits:
//   // %14 = attention %13, %pos {n_heads = 12, n_kv_heads = 12, head_size = 64, seq_len = 1024}
//   extern "C" __global__ void __launch_bounds__(256, 1)
//   k14_attention(const float* q, const int* pos, const float* kcache, const float* vcache, float* o) {
//     llamac::attention<12 /*H*/, 12 /*KVH*/, 64 /*HS*/, 1024 /*S*/>(q, pos, kcache, vcache, o);
//   }
// or
//   extern "C" __global__ void __launch_bounds__(256, 1) LLAMAC_CLUSTER_DIMS(1, 2, 1)
//   k14_attention_split(const float* q, const int* pos, const float* kcache, const float* vcache,
//                       float* partials, unsigned* counters, float* o) {
//     llamac::attention_split<12, 12, 64, 1024, float, 2>(q, pos, kcache, vcache, partials, counters, o);
//   }
//
//===----------------------------------------------------------------------===//
#pragma once

#include "common.cuh"

namespace llamac {
namespace launch {

[[maybe_unused]] constexpr int kAttentionThreads = 256;
/// The most positions one attention_split block holds (in registers).
[[maybe_unused]] constexpr int kAttentionChunk = 128;
/// The longest context the one-kernel form holds in shared memory (32 KB of scores).
[[maybe_unused]] constexpr int kAttentionMaxSeqLen = 8192;

LLAMAC_HOST_DEVICE constexpr Shape attention(unsigned nHeads) {
  return {nHeads, 1, kAttentionThreads, 0};
}
/// The most blocks attention_split spreads a span of positions over.
[[maybe_unused]] constexpr int kAttentionMaxParts = 8;
/// Blocks per span (attention_split's Parts) for nHeads heads: the most,
/// up to kAttentionMaxParts, that keep a step's first span within 32 blocks.
/// More blocks load a head's history sooner, but clusters of them find room
/// on the SMs later, while the next kernels' blocks are resident: at 128
/// tokens, stories110M (12 heads) is fastest with 2 parts and Llama-3.2-1B
/// (32 heads) with 1; at 1,024 tokens 8 and 2 parts win (bench/NOTES.md,
/// session 9).
LLAMAC_HOST_DEVICE constexpr unsigned attentionParts(unsigned nHeads) {
  unsigned parts = 1;
  while (parts < unsigned(kAttentionMaxParts) && nHeads * parts * 2 <= 32)
    parts *= 2;
  return parts;
}
/// Spans of kAttentionChunk * parts positions that cover seqLen.
LLAMAC_HOST_DEVICE constexpr unsigned attentionSpans(unsigned seqLen, unsigned parts) {
  return ceilDiv(seqLen, kAttentionChunk * parts);
}
LLAMAC_HOST_DEVICE constexpr Shape attentionSplit(unsigned nHeads, unsigned seqLen, unsigned parts = 1) {
  return {nHeads, attentionSpans(seqLen, parts) * parts, kAttentionThreads, 0};
}
/// Scratch where attention_split blocks leave their partial sums for the
/// merge: per head and block of a span, m, l and HS sums.
LLAMAC_HOST_DEVICE constexpr unsigned attentionPartialFloats(unsigned nHeads, unsigned headSize,
                                                             unsigned seqLen, unsigned parts = 1) {
  return nHeads * attentionSpans(seqLen, parts) * parts * (headSize + 2);
}
/// Counters attention_split keeps between steps: one per head, zero between
/// launches.
LLAMAC_HOST_DEVICE constexpr unsigned attentionCounters(unsigned nHeads) { return nHeads; }

} // namespace launch

#if LLAMAC_DEVICE_CODE
namespace detail {

/// Largest power of two <= n (n >= 1).
constexpr int floorPow2(int n) { return n >= 2 ? 2 * floorPow2(n / 2) : 1; }

/// Replaces the n scores in shared memory by exp(s - m), m their maximum, and
/// returns m and l = sum exp(s - m) to every thread; the barriers of the
/// block reductions publish the new scores.
template <int Threads>
__device__ __forceinline__ void softmaxNumerators(float *sScores, int n, float &m, float &l) {
  // Each reduction is one block barrier: the warps' results go to shared
  // memory, and every thread then reduces them itself, in the same order
  // (one array per reduction, so that no thread overwrites what another
  // still reads).
  constexpr int kWarps = Threads / kWarpSize;
  __shared__ float warpMaxes[kWarps], warpSums[kWarps];
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  float localMax = negativeInfinity();
  for (int i = threadIdx.x; i < n; i += Threads)
    localMax = fmaxf(localMax, sScores[i]);
  localMax = warpMax(localMax);
  if (lane == 0)
    warpMaxes[warp] = localMax;
  __syncthreads();
  m = warpMaxes[0];
#pragma unroll
  for (int w = 1; w < kWarps; ++w)
    m = fmaxf(m, warpMaxes[w]);
  float localSum = 0.0f;
  for (int i = threadIdx.x; i < n; i += Threads) {
    const float p = expf(sScores[i] - m);
    sScores[i] = p;
    localSum += p;
  }
  localSum = warpSum(localSum);
  if (lane == 0)
    warpSums[warp] = localSum;
  __syncthreads(); // also publishes the new scores
  l = warpSums[0];
#pragma unroll
  for (int w = 1; w < kWarps; ++w)
    l += warpSums[w];
}

/// sAcc[e] = sum over the Groups groups g of sPartial[g * HS + e], once every
/// thread has written its part; sAcc is complete on return.
template <int HS, int Groups, int Threads>
__device__ __forceinline__ void sumGroups(const float *sPartial, float *sAcc) {
  __syncthreads();
  for (int e = threadIdx.x; e < HS; e += Threads) {
    float sum = 0.0f;
#pragma unroll
    for (int g = 0; g < Groups; ++g)
      sum += sPartial[g * HS + e];
    sAcc[e] = sum;
  }
  __syncthreads();
}

/// Attention of one head over the n positions t0 + i * Stride, i in [0, n):
/// m = max_t s[t], l = sum_t exp(s[t] - m), sAcc[d] = sum_t exp(s[t] - m) v[t][d].
/// sq holds the head's query (16-byte aligned); sScores has room for n floats.
/// The whole block calls it; m and l reach every thread, sAcc is complete on return.
template <int KVDim, int HS, int Stride, int Threads, typename KvT>
__device__ __forceinline__ void attendRange(const float *sq, const KvT *kcache,
                                            const KvT *vcache, int kvOffset, int t0,
                                            int n, float *sScores, float *sAcc, float &m, float &l) {
  static_assert(HS <= Threads, "a thread per output element");

  // 1. Scores. A group of kLanes lanes (a power of two) computes one dot
  //    product, 16 bytes per lane per step when the rows allow it; the block
  //    covers kGroups positions per step. Every lane runs the same number of
  //    steps, so the shuffles always see the whole warp.
  constexpr bool kVector = HS % 4 == 0 && KVDim % 4 == 0;
  constexpr int kUnits = kVector ? HS / 4 : HS;
  constexpr int kLanes = floorPow2(kUnits < kWarpSize ? kUnits : kWarpSize);
  constexpr int kGroups = Threads / kLanes;
  const int group = threadIdx.x / kLanes, sub = threadIdx.x % kLanes;
  const float scoreDivisor = sqrtf((float)HS);
  for (int base = 0; base < n; base += kGroups) {
    const int i = base + group;
    float partial = 0.0f;
    if (i < n) {
      const KvT *krow = kcache + (size_t)(t0 + i * Stride) * KVDim + kvOffset;
      if constexpr (kVector) {
        for (int u = sub; u < kUnits; u += kLanes) {
          const float4 k4 = load4(krow + 4 * u);
          const float4 q4 = *reinterpret_cast<const float4 *>(sq + 4 * u);
          partial = fmaf(q4.x, k4.x, partial);
          partial = fmaf(q4.y, k4.y, partial);
          partial = fmaf(q4.z, k4.z, partial);
          partial = fmaf(q4.w, k4.w, partial);
        }
      } else {
        for (int d = sub; d < HS; d += kLanes)
          partial = fmaf(sq[d], toFloat(krow[d]), partial);
      }
    }
    const float dot = groupSum<kLanes>(partial);
    if (i < n && sub == 0)
      sScores[i] = dot / scoreDivisor;
  }
  __syncthreads();

  // 2. Softmax numerators, left unnormalized.
  softmaxNumerators<Threads>(sScores, n, m, l);

  // 3. Weighted sum of V rows: kVGroups groups of HS threads split the
  //    positions, then add their sums.
  constexpr int kVGroups = Threads / HS;
  __shared__ float sPartial[kVGroups * HS];
  const int vgroup = threadIdx.x / HS, d = threadIdx.x % HS;
  if (vgroup < kVGroups) {
    float acc = 0.0f;
    for (int i = vgroup; i < n; i += kVGroups)
      acc = fmaf(sScores[i], toFloat(vcache[(size_t)(t0 + i * Stride) * KVDim + kvOffset + d]), acc);
    sPartial[vgroup * HS + d] = acc;
  }
  sumGroups<HS, kVGroups, Threads>(sPartial, sAcc);
}

/// Attention of one head over at most Chunk positions t0 + i * Stride,
/// with the chunk's K and V rows held in registers, so that each is one round
/// trip to memory however many positions there are, and the rows of earlier
/// steps can be loaded before the dependency wait (the rows an earlier
/// attendRange read one after another cost 4-5 us per layer, bench/NOTES.md,
/// session 5). Needs HS and KVDim multiples of 4 (rows read 4 elements at a
/// time).
///
/// K: a group of kLanes lanes holds a position's row, kUnitsPerLane units of
/// 4 elements per lane; position i = r * kGroups + group. V: thread
/// (vgroup, unit) holds unit `unit` of positions i = r * kVGroups + vgroup.
template <int KVDim, int HS, int Chunk, int Stride, int Threads, typename KvT> struct AttentionChunk {
  static_assert(HS % 4 == 0 && KVDim % 4 == 0, "rows of whole units of 4 elements");
  static constexpr int kUnits = HS / 4;
  static_assert(kUnits <= Threads, "a thread per unit of a V row");
  static constexpr int kLanes = floorPow2(kUnits < kWarpSize ? kUnits : kWarpSize);
  static constexpr int kUnitsPerLane = (kUnits + kLanes - 1) / kLanes;
  static constexpr int kGroups = Threads / kLanes;
  static constexpr int kKRounds = (Chunk + kGroups - 1) / kGroups;
  static constexpr int kVGroups = Threads / kUnits;
  static constexpr int kVRounds = (Chunk + kVGroups - 1) / kVGroups;
  using Raw = typename Raw4<KvT>::type;

  Raw k[kKRounds][kUnitsPerLane];
  Raw v[kVRounds];
  // The current position's row, loaded after the wait into registers of its
  // own: a load into k or v would first wait for the earlier rows' loads
  // into the same registers (bench/NOTES.md, session 8).
  Raw kCurrent[kUnitsPerLane];
  Raw vCurrent;

  /// Loads the rows of positions t0 + i * Stride for i in [0, n), n <= Chunk: those
  /// of earlier steps (loadCurrent loads the one this step adds).
  __device__ __forceinline__ void loadEarlier(const KvT *kcache, const KvT *vcache, int kvOffset, int t0, int n) {
    const int group = threadIdx.x / kLanes, sub = threadIdx.x % kLanes;
#pragma unroll
    for (int r = 0; r < kKRounds; ++r) {
      const int i = r * kGroups + group;
      if (i < n) {
#pragma unroll
        for (int j = 0; j < kUnitsPerLane; ++j) {
          const int u = sub + j * kLanes;
          if (u < kUnits)
            k[r][j] = loadRaw4(kcache + (size_t)(t0 + i * Stride) * KVDim + kvOffset + 4 * u);
        }
      }
    }
    const int vgroup = threadIdx.x / kUnits, unit = threadIdx.x % kUnits;
    if (vgroup < kVGroups) {
#pragma unroll
      for (int r = 0; r < kVRounds; ++r) {
        const int i = r * kVGroups + vgroup;
        if (i < n)
          v[r] = loadRaw4(vcache + (size_t)(t0 + i * Stride) * KVDim + kvOffset + 4 * unit);
      }
    }
  }

  /// Loads the row of position t0 + i * Stride, the position this step adds (attend's
  /// `current`), into kCurrent and vCurrent of the threads that hold that
  /// position.
  __device__ __forceinline__ void loadCurrent(const KvT *kcache, const KvT *vcache, int kvOffset, int t0, int i) {
    const int group = threadIdx.x / kLanes, sub = threadIdx.x % kLanes;
    if (i % kGroups == group) {
#pragma unroll
      for (int j = 0; j < kUnitsPerLane; ++j) {
        const int u = sub + j * kLanes;
        if (u < kUnits)
          kCurrent[j] = loadRaw4(kcache + (size_t)(t0 + i * Stride) * KVDim + kvOffset + 4 * u);
      }
    }
    const int vgroup = threadIdx.x / kUnits, unit = threadIdx.x % kUnits;
    if (vgroup < kVGroups && i % kVGroups == vgroup)
      vCurrent = loadRaw4(vcache + (size_t)(t0 + i * Stride) * KVDim + kvOffset + 4 * unit);
  }

  /// The loaded positions [0, n) against the query q (the head's HS floats,
  /// 16-byte aligned, in global memory): m = max score, l = sum exp(s - m),
  /// sAcc[d] = sum exp(s - m) v[d], as attendRange; with `normalize`,
  /// sAcc[d] = sum (exp(s - m) / l) v[d] instead, the CPU executor's order of
  /// operations (one block holds all of the head's positions). Position `current` (or none,
  /// -1) is in loadCurrent's registers. The whole block calls it; sScores
  /// has room for Chunk floats.
  __device__ __forceinline__ void attend(const float *q, int n, int current, bool normalize, float *sScores,
                                         float *sAcc, float &m, float &l) const {
    const int group = threadIdx.x / kLanes, sub = threadIdx.x % kLanes;
    float4 q4[kUnitsPerLane];
#pragma unroll
    for (int j = 0; j < kUnitsPerLane; ++j) {
      const int u = sub + j * kLanes;
      q4[j] = u < kUnits ? loadFloat4(q + 4 * u) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    }
    timelineMark(1);
    const float scoreDivisor = sqrtf((float)HS);
    // Every round, even past n, and the rounds' group sums a shuffle level
    // at a time, so that their shuffles interleave (groupSum's order: the
    // same sums).
    float partial[kKRounds];
#pragma unroll
    for (int r = 0; r < kKRounds; ++r) {
      const int i = r * kGroups + group;
      partial[r] = 0.0f;
      if (i < n) {
#pragma unroll
        for (int j = 0; j < kUnitsPerLane; ++j) {
          if (sub + j * kLanes < kUnits) {
            const float4 k4 = widen4(i == current ? kCurrent[j] : k[r][j], KvT());
            partial[r] = fmaf(q4[j].x, k4.x, partial[r]);
            partial[r] = fmaf(q4[j].y, k4.y, partial[r]);
            partial[r] = fmaf(q4[j].z, k4.z, partial[r]);
            partial[r] = fmaf(q4[j].w, k4.w, partial[r]);
          }
        }
      }
    }
    timelineMark(5, partial[kKRounds - 1]);
#pragma unroll
    for (int offset = kLanes / 2; offset > 0; offset /= 2) {
#pragma unroll
      for (int r = 0; r < kKRounds; ++r)
        partial[r] += __shfl_xor_sync(0xffffffffu, partial[r], offset);
    }
#pragma unroll
    for (int r = 0; r < kKRounds; ++r) {
      const int i = r * kGroups + group;
      if (i < n && sub == 0)
        sScores[i] = partial[r] / scoreDivisor;
    }
    __syncthreads();
    timelineMark(2);
    softmaxNumerators<Threads>(sScores, n, m, l);
    timelineMark(3);

    __shared__ __align__(16) float sPartial[kVGroups * HS];
    const int vgroup = threadIdx.x / kUnits, unit = threadIdx.x % kUnits;
    if (vgroup < kVGroups) {
      float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll
      for (int r = 0; r < kVRounds; ++r) {
        const int i = r * kVGroups + vgroup;
        if (i < n) {
          const float p = normalize ? sScores[i] / l : sScores[i];
          const float4 v4 = widen4(i == current ? vCurrent : v[r], KvT());
          acc.x = fmaf(p, v4.x, acc.x);
          acc.y = fmaf(p, v4.y, acc.y);
          acc.z = fmaf(p, v4.z, acc.z);
          acc.w = fmaf(p, v4.w, acc.w);
        }
      }
      timelineMark(6, acc.x + acc.y + acc.z + acc.w);
      *reinterpret_cast<float4 *>(sPartial + vgroup * HS + 4 * unit) = acc;
    }
    sumGroups<HS, kVGroups, Threads>(sPartial, sAcc);
    timelineMark(4);
  }
};

/// Whether attention over Chunk positions of head size HS takes the register
/// path (AttentionChunk); other shapes read rows one by one (attendRange).
template <int KVDim, int HS> constexpr bool kAttentionInRegisters = HS % 4 == 0 && KVDim % 4 == 0;

/// Attention of head h over the n positions t0 + i * Stride, i in [0, n),
/// none past pos (read from memory): the rows of earlier steps are loaded
/// before the dependency wait, the row this step wrote (at pos, if among
/// them) and the query after it. Writes m, l and sAcc as
/// AttentionChunk::attend.
///
/// Reading before the wait: pos and the cache rows before pos were written by
/// earlier steps, and every kernel of the step before has finished before
/// the kernels here can launch: a step's first kernel waits before it lets
/// the next launch (the embedding, KernelWrappers.cpp), or in a chained step
/// the classifier's block 0 waits, advances pos and only then lets the next
/// kernel launch (advance.cuh).
template <int KVH, int HS, int Chunk, int Stride, int Threads, typename KvT>
__device__ __forceinline__ void attendChunkAfterWait(const float *q, int pos, const KvT *kcache,
                                                     const KvT *vcache, int kvOffset, int t0, int n,
                                                     bool normalize, float *sScores, float *sAcc, float &m,
                                                     float &l) {
  AttentionChunk<KVH * HS, HS, Chunk, Stride, Threads, KvT> chunk;
  // The position this step adds, if it is among them (then the last).
  const int fromStart = pos - t0;
  const int current = fromStart % Stride == 0 && fromStart / Stride < n ? fromStart / Stride : -1;
  const int earlier = current >= 0 ? current : n;
  chunk.loadEarlier(kcache, vcache, kvOffset, t0, earlier);
  waitForPreviousKernel();
  if (current >= 0)
    chunk.loadCurrent(kcache, vcache, kvOffset, t0, current);
  chunk.attend(q, n, current, normalize, sScores, sAcc, m, l);
}

/// Head h's attention over the n positions t0 + i * Stride (i in [0, n),
/// none past pos), waiting for the kernel that wrote q_h (the head's query)
/// in its time: with registers (attendChunkAfterWait) for up to
/// kAttentionChunk positions of a shape that allows it, else row by row
/// after the wait (attendRange). Writes m, l and sAcc; returns whether sAcc
/// is normalized (only with `normalize`, and not row by row).
template <int KVH, int HS, int Chunk, int Stride, int Threads, typename KvT>
__device__ __forceinline__ bool attendHead(const float *qh, int pos, const KvT *kcache, const KvT *vcache,
                                           int kvOffset, int t0, int n, bool normalize, float *sScores,
                                           float *sAcc, float &m, float &l) {
  if constexpr (Chunk <= launch::kAttentionChunk && kAttentionInRegisters<KVH * HS, HS>) {
    attendChunkAfterWait<KVH, HS, Chunk, Stride, Threads>(qh, pos, kcache, vcache, kvOffset, t0, n, normalize,
                                                          sScores, sAcc, m, l);
    return normalize;
  } else {
    __shared__ __align__(16) float sq[HS];
    waitForPreviousKernel();
    for (int d = threadIdx.x; d < HS; d += Threads)
      sq[d] = qh[d];
    __syncthreads();
    attendRange<KVH * HS, HS, Stride, Threads>(sq, kcache, vcache, kvOffset, t0, n, sScores, sAcc, m, l);
    return false;
  }
}

} // namespace detail

template <int H, int KVH, int HS, int S, typename KvT = float>
__device__ __forceinline__ void attention(const float *q, const int *pos,
                                          const KvT *kcache, const KvT *vcache,
                                          float *__restrict__ out) {
  static_assert(H % KVH == 0, "each KV head serves H / KVH query heads");
  static_assert(S <= launch::kAttentionMaxSeqLen, "use attention_split for longer contexts");
  constexpr int kThreads = launch::kAttentionThreads;
  __shared__ float sScores[S];
  __shared__ float sAcc[HS];
  const int h = detail::blockX(), kvh = h / (H / KVH);
  const int p = detail::positionBeforeWait(pos); // before the wait: attendChunkAfterWait says why
  float m, l;
  const bool normalized = detail::attendHead<KVH, HS, S, 1, kThreads>(q + h * HS, p, kcache, vcache, kvh * HS, 0,
                                                                      p + 1, true, sScores, sAcc, m, l);
  for (int d = threadIdx.x; d < HS; d += kThreads)
    out[h * HS + d] = normalized ? sAcc[d] : sAcc[d] / l;
}

template <int H, int KVH, int HS, int S, typename KvT = float, int Parts = 1>
__device__ __forceinline__ void attention_split(const float *q, const int *pos,
                                                const KvT *kcache,
                                                const KvT *vcache, float *partials,
                                                unsigned *__restrict__ counters, float *__restrict__ out) {
  static_assert(H % KVH == 0, "each KV head serves H / KVH query heads");
  constexpr int kThreads = launch::kAttentionThreads, kChunk = launch::kAttentionChunk;
  static_assert(Parts >= 1 && Parts <= launch::kAttentionMaxParts, "1 to 8 blocks per span");
  // Block r of span c takes every Parts-th position of the span from its
  // r-th on: positions c * kSpan + r + i * Parts, at most kChunk of them.
  // The last spans come first in the grid (y = (kSpans - 1 - c) * Parts +
  // r): the blocks of spans past pos, which return at once, are then
  // scheduled first, while the kernel before still runs, and not after the
  // others, which delayed the kernel's end by 0.8 us with clusters
  // (bench/NOTES.md, session 9). A unit leaves one partial for the merge
  // over global memory: a span's cluster, whose blocks first merge in shared
  // memory, or without clusters, each block.
  constexpr int kSpan = kChunk * Parts, kSpans = launch::attentionSpans(S, Parts);
  constexpr bool kCluster = Parts > 1 && LLAMAC_CLUSTERS;
  constexpr int kMaxUnits = kSpans * Parts;
  const int h = detail::blockX(), kvh = h / (H / KVH), y = detail::blockY();
  const int p = detail::positionBeforeWait(pos); // before the wait: attendChunkAfterWait says why
  const int span = kSpans - 1 - y / Parts, r = y % Parts;
  const int positions = p + 1, base = span * kSpan, t0 = base + r;
  if (kCluster ? base >= positions : t0 >= positions)
    return; // the whole block (and cluster): no barrier has been reached yet
  const int n = t0 < positions ? min((positions - t0 + Parts - 1) / Parts, kChunk) : 0;
  const int spans = (positions + kSpan - 1) / kSpan, lastSpanParts = min(positions - (spans - 1) * kSpan, Parts);
  const int units = kCluster ? spans : (spans - 1) * Parts + lastSpanParts;
  const int unit = kCluster ? span : span * Parts + r;

  __shared__ float sScores[kChunk];
  __shared__ __align__(16) float sAcc[HS];
  __shared__ bool sLast;
  float m = detail::negativeInfinity(), l = 0.0f;
  bool normalized = false;
#if LLAMAC_CLUSTERS
  // The cluster's other blocks store their m, l and sums into the first's
  // shared memory (st.async, counted in bytes on its barrier) and exit; the
  // first merges them and goes on as the span's block. Setting up the
  // barrier takes a cluster barrier, before the dependency wait.
  constexpr int kSlot = HS + 2; // floats of a part's m, l and sums
  __shared__ __align__(8) unsigned long long sArrived;
  __shared__ float sParts[kCluster ? Parts : 1][kSlot];
  const unsigned rank = kCluster ? detail::clusterRank() : 0;
  const int filled = min(positions - base, Parts); // blocks of the cluster with positions
  if constexpr (kCluster) {
    if (rank == 0 && threadIdx.x == 0) {
      detail::initArrivalBarrier(&sArrived);
      if (filled > 1)
        detail::arriveExpectingBytes(&sArrived, unsigned((filled - 1) * kSlot * 4));
    }
    __syncwarp(); // barrier.cluster's .aligned: the whole warp together
    detail::clusterArrive();
  }
#endif
  if (n > 0) // a cluster's later blocks may have no positions yet
    normalized = detail::attendHead<KVH, HS, kChunk, Parts, kThreads>(q + h * HS, p, kcache, vcache, kvh * HS, t0,
                                                                      n, units == 1 && !kCluster, sScores, sAcc, m,
                                                                      l);
#if LLAMAC_CLUSTERS
  if constexpr (kCluster) {
    detail::clusterWait(); // the first's barrier is initialized
    if (rank != 0) {
      if (n > 0) {
        const unsigned slot = detail::clusterAddress(&sParts[rank][0], 0);
        const unsigned arrived = detail::clusterAddress(&sArrived, 0);
        for (int d = threadIdx.x; d < HS; d += kThreads)
          detail::storeToCluster(slot + 4 * (2 + d), sAcc[d], arrived);
        if (threadIdx.x == 0) {
          detail::storeToCluster(slot, m, arrived);
          detail::storeToCluster(slot + 4, l, arrived);
        }
      }
      return;
    }
    detail::timelineMark(7); // the first block's own part done
    if (filled > 1) {
      detail::waitForBytes(&sArrived);
      detail::timelineMark(8); // the others' parts arrived
      float maxScore = m;
      for (int r = 1; r < filled; ++r)
        maxScore = fmaxf(maxScore, sParts[r][0]);
      const float own = expf(m - maxScore);
      float total = l * own;
      for (int r = 1; r < filled; ++r)
        total += sParts[r][1] * expf(sParts[r][0] - maxScore);
      for (int d = threadIdx.x; d < HS; d += kThreads) {
        float acc = sAcc[d] * own;
        for (int r = 1; r < filled; ++r)
          acc += sParts[r][2 + d] * expf(sParts[r][0] - maxScore);
        sAcc[d] = acc; // thread d alone reads and writes element d
      }
      m = maxScore;
      l = total;
    }
  }
#endif
  if (units == 1) {
    for (int d = threadIdx.x; d < HS; d += kThreads)
      out[h * HS + d] = normalized ? sAcc[d] : sAcc[d] / l;
    return;
  }

  // Publish the partial, then count it; the block that counts last merges.
  // Without clusters, the slots of blocks without positions are left out.
  float *head = partials + (size_t)h * kMaxUnits * (HS + 2);
  float *partial = head + (size_t)unit * (HS + 2);
  if (threadIdx.x == 0) {
    partial[0] = m;
    partial[1] = l;
  }
  for (int d = threadIdx.x; d < HS; d += kThreads)
    partial[2 + d] = sAcc[d];
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) {
    sLast = atomicAdd(&counters[h], 1u) == (unsigned)units - 1;
    if (sLast)
      counters[h] = 0; // every unit has counted: ready for the next step
  }
  __syncthreads();
  if (!sLast)
    return;
  __threadfence();

  // Other blocks wrote these: read through L2 (__ldcg), never a stale L1 line.
  const int slots = kCluster ? spans : spans * Parts;
  auto used = [&](int slot) { return kCluster || (slot / Parts) * kSpan + slot % Parts < positions; };
  float maxScore = detail::negativeInfinity();
  for (int c = 0; c < slots; ++c)
    if (used(c))
      maxScore = fmaxf(maxScore, __ldcg(head + c * (HS + 2)));
  float total = 0.0f;
  for (int c = 0; c < slots; ++c)
    if (used(c))
      total += __ldcg(head + c * (HS + 2) + 1) * expf(__ldcg(head + c * (HS + 2)) - maxScore);
  for (int d = threadIdx.x; d < HS; d += kThreads) {
    float acc = 0.0f;
    for (int c = 0; c < slots; ++c)
      if (used(c))
        acc += __ldcg(head + c * (HS + 2) + 2 + d) * expf(__ldcg(head + c * (HS + 2)) - maxScore);
    out[h * HS + d] = acc / total;
  }
}
#endif // LLAMAC_DEVICE_CODE

} // namespace llamac
