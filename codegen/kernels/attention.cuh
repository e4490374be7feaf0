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
// Two forms; the code generator picks one per model:
//
// 1. attention<H, KVH, HS, S>: one block per head walks all positions, its
//    scores in static shared memory (S floats, so S <= kAttentionMaxSeqLen).
//    Launch: launch::attention(H): H blocks of 256 threads. Best for short
//    contexts, where the cache is small and one launch is all it takes.
//
// 2. Flash-decoding, for long contexts: attention_split<H, KVH, HS, S> gives
//    each (head, chunk of kAttentionChunk positions) its own block, which
//    writes the chunk's max m, sum l = sum exp(s - m) and unnormalized
//    sum exp(s - m) v to a scratch buffer. The last block of a head to finish
//    (a counter per head, in memory no other kernel uses) merges the head's
//    chunks: M = max m_i, o = sum_i acc_i e^(m_i-M) / sum_i l_i e^(m_i-M),
//    and resets the counter for the next step. With one chunk (pos < 128)
//    the block writes o directly. One kernel, so no second launch.
//    Launch: launch::attentionSplit(H, S): H x ceil(S / 128) blocks of 256
//    (chunks past pos return at once).
//    Scratch: launch::attentionPartialFloats(H, HS, S) floats; state:
//    launch::attentionCounters(H) zeroed 32-bit counters.
//
// Bytes:  2*(pos+1)*KVH*HS*4 (K and V rows up to pos; each K/V row is read
//         once per query head that shares it, from L2 after the first) +
//         2*H*HS*4. stories110M at pos 1023: 6.3 MB per layer.
//
// Wrappers the code generator emits:
//   // %14 = attention %13, %pos {n_heads = 12, n_kv_heads = 12, head_size = 64, seq_len = 1024}
//   extern "C" __global__ void __launch_bounds__(256)
//   k14_attention(const float* q, const int* pos, const float* kcache, const float* vcache, float* o) {
//     llamac::attention<12 /*H*/, 12 /*KVH*/, 64 /*HS*/, 1024 /*S*/>(q, pos, kcache, vcache, o);
//   }
// or
//   extern "C" __global__ void __launch_bounds__(256)
//   k14_attention_split(const float* q, const int* pos, const float* kcache, const float* vcache,
//                       float* partials, unsigned* counters, float* o) {
//     llamac::attention_split<32, 8, 128, 8192>(q, pos, kcache, vcache, partials, counters, o);
//   }
//
//===----------------------------------------------------------------------===//
#pragma once

#include "common.cuh"

namespace llamac {
namespace launch {

[[maybe_unused]] constexpr int kAttentionThreads = 256;
/// Positions one attention_split block covers.
[[maybe_unused]] constexpr int kAttentionChunk = 128;
/// The longest context the one-kernel form holds in shared memory (32 KB of scores).
[[maybe_unused]] constexpr int kAttentionMaxSeqLen = 8192;

LLAMAC_HOST_DEVICE constexpr Shape attention(unsigned nHeads) {
  return {nHeads, 1, kAttentionThreads, 0};
}
LLAMAC_HOST_DEVICE constexpr unsigned attentionChunks(unsigned seqLen) {
  return ceilDiv(seqLen, kAttentionChunk);
}
LLAMAC_HOST_DEVICE constexpr Shape attentionSplit(unsigned nHeads, unsigned seqLen) {
  return {nHeads, attentionChunks(seqLen), kAttentionThreads, 0};
}
/// Scratch where attention_split blocks leave their chunk for the merge: per head and chunk,
/// m, l and HS sums.
LLAMAC_HOST_DEVICE constexpr unsigned attentionPartialFloats(unsigned nHeads, unsigned headSize,
                                                             unsigned seqLen) {
  return nHeads * attentionChunks(seqLen) * (headSize + 2);
}
/// Counters attention_split keeps between steps: one per head, zero between
/// launches.
LLAMAC_HOST_DEVICE constexpr unsigned attentionCounters(unsigned nHeads) { return nHeads; }

} // namespace launch

#if LLAMAC_DEVICE_CODE
namespace detail {

/// Largest power of two <= n (n >= 1).
constexpr int floorPow2(int n) { return n >= 2 ? 2 * floorPow2(n / 2) : 1; }

/// Attention of one head over positions [t0, t1):
/// m = max_t s[t], l = sum_t exp(s[t] - m), sAcc[d] = sum_t exp(s[t] - m) v[t][d].
/// sq holds the head's query (16-byte aligned); sScores has room for t1 - t0 floats.
/// The whole block calls it; m and l reach every thread, sAcc is complete on return.
template <int KVDim, int HS, int Threads, typename KvT>
__device__ __forceinline__ void attendRange(const float *sq, const KvT *kcache,
                                            const KvT *vcache, int kvOffset, int t0,
                                            int t1, float *sScores, float *sAcc, float &m, float &l) {
  static_assert(HS <= Threads, "a thread per output element");
  const int n = t1 - t0;

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
      const KvT *krow = kcache + (size_t)(t0 + i) * KVDim + kvOffset;
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
  float localMax = negativeInfinity();
  for (int i = threadIdx.x; i < n; i += Threads)
    localMax = fmaxf(localMax, sScores[i]);
  m = blockMax<Threads>(localMax);
  float localSum = 0.0f;
  for (int i = threadIdx.x; i < n; i += Threads) {
    const float p = expf(sScores[i] - m);
    sScores[i] = p;
    localSum += p;
  }
  l = blockSum<Threads>(localSum); // its barriers publish sScores

  // 3. Weighted sum of V rows: kVGroups groups of HS threads split the
  //    positions, then add their sums.
  constexpr int kVGroups = Threads / HS;
  __shared__ float sPartial[kVGroups * HS];
  const int vgroup = threadIdx.x / HS, d = threadIdx.x % HS;
  if (vgroup < kVGroups) {
    float acc = 0.0f;
    for (int i = vgroup; i < n; i += kVGroups)
      acc = fmaf(sScores[i], toFloat(vcache[(size_t)(t0 + i) * KVDim + kvOffset + d]), acc);
    sPartial[vgroup * HS + d] = acc;
  }
  __syncthreads();
  for (int e = threadIdx.x; e < HS; e += Threads) {
    float sum = 0.0f;
#pragma unroll
    for (int g = 0; g < kVGroups; ++g)
      sum += sPartial[g * HS + e];
    sAcc[e] = sum;
  }
  __syncthreads();
}

} // namespace detail

template <int H, int KVH, int HS, int S, typename KvT = float>
__device__ __forceinline__ void attention(const float *q, const int *pos,
                                          const KvT *kcache, const KvT *vcache,
                                          float *__restrict__ out) {
  static_assert(H % KVH == 0, "each KV head serves H / KVH query heads");
  static_assert(S <= launch::kAttentionMaxSeqLen, "use attention_split for longer contexts");
  constexpr int kThreads = launch::kAttentionThreads;
  __shared__ __align__(16) float sq[HS];
  __shared__ float sScores[S];
  __shared__ float sAcc[HS];
  const int h = blockIdx.x, kvh = h / (H / KVH);
  for (int d = threadIdx.x; d < HS; d += kThreads)
    sq[d] = q[h * HS + d];
  __syncthreads();
  float m, l;
  detail::attendRange<KVH * HS, HS, kThreads>(sq, kcache, vcache, kvh * HS, 0, *pos + 1, sScores, sAcc,
                                              m, l);
  for (int d = threadIdx.x; d < HS; d += kThreads)
    out[h * HS + d] = sAcc[d] / l;
}

template <int H, int KVH, int HS, int S, typename KvT = float>
__device__ __forceinline__ void attention_split(const float *q, const int *pos,
                                                const KvT *kcache,
                                                const KvT *vcache, float *partials,
                                                unsigned *__restrict__ counters, float *__restrict__ out) {
  static_assert(H % KVH == 0, "each KV head serves H / KVH query heads");
  constexpr int kThreads = launch::kAttentionThreads, kChunk = launch::kAttentionChunk;
  constexpr int kChunks = launch::attentionChunks(S);
  const int h = blockIdx.x, kvh = h / (H / KVH), chunk = blockIdx.y;
  const int t0 = chunk * kChunk, positions = *pos + 1;
  if (t0 >= positions)
    return; // the whole block: no barrier has been reached yet
  const int t1 = t0 + kChunk < positions ? t0 + kChunk : positions;
  const int chunks = (positions + kChunk - 1) / kChunk;

  __shared__ __align__(16) float sq[HS];
  __shared__ float sScores[kChunk];
  __shared__ float sAcc[HS];
  __shared__ bool sLast;
  for (int d = threadIdx.x; d < HS; d += kThreads)
    sq[d] = q[h * HS + d];
  __syncthreads();
  float m, l;
  detail::attendRange<KVH * HS, HS, kThreads>(sq, kcache, vcache, kvh * HS, t0, t1, sScores, sAcc, m,
                                              l);
  if (chunks == 1) {
    for (int d = threadIdx.x; d < HS; d += kThreads)
      out[h * HS + d] = sAcc[d] / l;
    return;
  }

  float *head = partials + (size_t)h * kChunks * (HS + 2);
  float *partial = head + (size_t)chunk * (HS + 2);
  if (threadIdx.x == 0) {
    partial[0] = m;
    partial[1] = l;
  }
  for (int d = threadIdx.x; d < HS; d += kThreads)
    partial[2 + d] = sAcc[d];

  // Publish the partial, then count it; the block that counts last merges.
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) {
    sLast = atomicAdd(&counters[h], 1u) == (unsigned)chunks - 1;
    if (sLast)
      counters[h] = 0; // every chunk has counted: ready for the next step
  }
  __syncthreads();
  if (!sLast)
    return;
  __threadfence();

  // Other blocks wrote these: read through L2 (__ldcg), never a stale L1 line.
  float maxScore = detail::negativeInfinity();
  for (int c = 0; c < chunks; ++c)
    maxScore = fmaxf(maxScore, __ldcg(head + c * (HS + 2)));
  float total = 0.0f;
  for (int c = 0; c < chunks; ++c)
    total += __ldcg(head + c * (HS + 2) + 1) * expf(__ldcg(head + c * (HS + 2)) - maxScore);
  for (int d = threadIdx.x; d < HS; d += kThreads) {
    float acc = 0.0f;
    for (int c = 0; c < chunks; ++c)
      acc += __ldcg(head + c * (HS + 2) + 2 + d) * expf(__ldcg(head + c * (HS + 2)) - maxScore);
    out[h * HS + d] = acc / total;
  }
}
#endif // LLAMAC_DEVICE_CODE

} // namespace llamac
