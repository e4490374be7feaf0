//===- passes/FuseRopeKvWrite.h - QKV projection, RoPE and KV write -*- C++ -*-===//
//
// After merge-qkv, fuses the QKV matmul with both ropes and the KV cache
// write: K and V go from registers to the cache and only the rotated Q is
// stored as a value.
//
//   %1 = matmul_qkv %0, @l0.wq, @l0.wk, @l0.wv {rms_eps = 1e-05} : tensor<96xf32>
//   %2 = slice %1 {offset = 0, size = 64} : tensor<64xf32>
//   %3 = slice %1 {offset = 64, size = 16} : tensor<16xf32>
//   %4 = slice %1 {offset = 80, size = 16} : tensor<16xf32>
//   %5 = rope %2, %pos {head_size = 8, theta = 10000.0} : tensor<64xf32>
//   %6 = rope %3, %pos {head_size = 8, theta = 10000.0} : tensor<16xf32>
//   kv_write %6, %4, %pos {layer = 0}
//   %7 = attention %5, %pos {layer = 0, ...}
// ->
//   %1 = matmul_qkv_rope_kv %0, @l0.wq, @l0.wk, @l0.wv, %pos
//            {rms_eps = 1e-05, layer = 0, head_size = 8, theta = 10000.0} : tensor<64xf32>
//   %2 = attention %1, %pos {layer = 0, ...}
//
// Algorithm, for each function, for each kv_write in op order:
//   1. Walk up from `kv_write %kr, %v, %pos`: %kr = rope %k, %pos; %k and %v
//      are slices {Nq, Nkv} and {Nq + Nkv, Nkv} of one matmul_qkv whose
//      weights have Nq and Nkv rows; %q = slice {0, Nq} of it feeds
//      %qr = rope %q, %pos with the same head_size and theta as the K rope.
//      Every rope and the kv_write use the same %pos.
//   2. Check that nothing else sees the intermediates: the matmul_qkv has
//      exactly those three slices as users, %q, %k, %kr and %v have exactly
//      one user each (the next op of the pattern), and none is returned.
//   3. Build the fused op where the kv_write was. That keeps every KV cache
//      access in its order; the pure ops it absorbs only move later, so each
//      user of %qr must already come after the kv_write (else skip).
//   4. Redirect %qr's users to the fused result and erase the seven ops.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "passes/Pass.h"

namespace llamac::passes {

std::unique_ptr<Pass> createFuseRopeKvWritePass();

} // namespace llamac::passes
