//===- codegen/kernels/matmul_qkv_rope_kv.cuh - Q, K, V, RoPE, KV cache write ===//
//
// Op:     %q = matmul_qkv_rope_kv %x, @Wq, @Wk, @Wv, %pos [rms prologue]
//              {head_size = HS, theta, layer}
//         x: [K] f32; Wq: [Nq][K], Wk: [Nk][K], Wv: [Nk][K] of T; pos: i32 in
//         device memory; kcache, vcache: this layer's [seq_len][Nk] of KvT
//         (the KV cache dtype; the caller offsets the pointers to the layer).
// Math:   x' = x * s (s as in matmul.cuh); q = Wq x', k = Wk x', v = Wv x';
//         RoPE (rope.cuh) on q and on k, each with j = index % HS;
//         kcache[pos][:] = rotated k; vcache[pos][:] = v; y = rotated q [Nq].
// Launch: launch::matmulQkvRopeKv(Nq, Nk, Split): one task of Split warps per
//         row PAIR (RoPE rotates rows 2i and 2i+1 together),
//         ceil((Nq + 2*Nk)/2 * Split / 8) blocks of 256.
// Bytes:  (Nq+2*Nk)*K*sizeof(T) + K*4 + (Nq+2*Nk)*4. stories110M f32: 7.1 MB.
//
// Wrapper the code generator emits:
//   // %6 = matmul_qkv_rope_kv %5, @l0.wq, @l0.wk, @l0.wv, %pos {head_size = 64, theta = 10000.0, layer = 0}
//   extern "C" __global__ void __launch_bounds__(256)
//   k6_matmul_qkv_rope_kv(const float* x, const float* wq, const float* wk, const float* wv,
//                         const int* pos, float* kcache, float* vcache, float* y) {
//     llamac::matmul_qkv_rope_kv<768 /*Nq*/, 768 /*Nk*/, 768 /*K*/, 64 /*head size*/, float, true /*rms*/, 1 /*split*/>(
//         x, wq, wk, wv, pos, kcache, vcache, y, 10000.0f, 1e-5f);
//   }
//
//===----------------------------------------------------------------------===//
#pragma once

#include "gemv.cuh"
#include "rope.cuh"

namespace llamac {
namespace launch {

LLAMAC_HOST_DEVICE constexpr Shape matmulQkvRopeKv(unsigned nq, unsigned nk, unsigned split) {
  return gemv((nq + 2 * nk) / 2, split);
}

} // namespace launch

#if LLAMAC_DEVICE_CODE
template <int Nq, int Nk, int K, int HeadSize, typename T, bool RmsPrologue, int Split, typename KvT = float>
__device__ __forceinline__ void
matmul_qkv_rope_kv(const float *x, const T *__restrict__ wq, const T *__restrict__ wk,
                   const T *__restrict__ wv, const int *pos, KvT *__restrict__ kcache,
                   KvT *__restrict__ vcache, float *__restrict__ y, float theta, float eps) {
  static_assert(Nq % HeadSize == 0 && Nk % HeadSize == 0 && HeadSize % 2 == 0,
                "whole heads of pairs");
  // Task t is the pair of rows (2t, 2t + 1) of the concatenation [Wq; Wk; Wv].
  auto rowsOf = [&](int task, int r) {
    const int row = 2 * task + r;
    return row < Nq        ? wq + (size_t)row * K
           : row < Nq + Nk ? wk + (size_t)(row - Nq) * K
                           : wv + (size_t)(row - Nq - Nk) * K;
  };
  // Each kind of row: its row within its matrix, whether it rotates.
  struct Pair {
    bool isQ, isK;
    int local;
    __device__ explicit Pair(int task) {
      const int row = 2 * task; // the pair (row, row + 1)
      isQ = row < Nq;
      isK = !isQ && row < Nq + Nk;
      local = isQ ? row : isK ? row - Nq : row - Nq - Nk;
    }
  };
  // The position and the pair's rotation do not depend on x: read and
  // computed before the wait (pow, cos and sin are long dependent chains).
  struct Rotation {
    int p;
    float theta, c = 1.0f, s = 0.0f;
    __device__ void beforeWait(int task) {
      const Pair pair(task);
      if (pair.isQ || pair.isK)
        detail::ropeCosSin<HeadSize>(pair.local % HeadSize, p, theta, c, s);
    }
    __device__ void afterWait(int) {}
  } rotation{detail::positionBeforeWait(pos), theta};
  auto epilogue = [&](int task, const float(&dots)[2]) {
    const Pair pair(task);
    float v0 = dots[0], v1 = dots[1];
    if (pair.isQ || pair.isK)
      detail::ropeApply(rotation.c, rotation.s, v0, v1);
    if (pair.isQ) {
      y[pair.local] = v0;
      y[pair.local + 1] = v1;
    } else {
      KvT *out = (pair.isK ? kcache : vcache) + (size_t)rotation.p * Nk + pair.local;
      detail::storeAs(v0, out);
      detail::storeAs(v1, out + 1);
    }
  };
  detail::gemvTasks<K, T, 2, RmsPrologue, Split>(x, eps, (Nq + 2 * Nk) / 2, rowsOf, epilogue, rotation);
}
#endif // LLAMAC_DEVICE_CODE

} // namespace llamac
