//===- passes/Canonicalize.h - Dead code, no-op slices, unused weights -*- C++ -*-===//
//
// The clean-up run at the start and the end of the pipeline: fusions leave
// values nobody reads and weights nobody uses, and slices that take a whole
// vector.
//
//   weight @unused : tensor<8x64xf32> = file 0
//   %1 = slice %0 {offset = 0, size = 64} : tensor<64xf32>
//   %2 = attention %1, %pos {layer = 0, head_size = 8, n_heads = 8, n_kv_heads = 4} : tensor<64xf32>
//   %3 = matmul %2, @l0.wo : tensor<64xf32>
//   %4 = matmul %1, @wcls : tensor<512xf32>
//   return %4
// ->
//   %1 = matmul %0, @wcls : tensor<512xf32>
//   return %1
//
// Algorithm:
//  1. In every function, replace each `slice %x {offset = 0, size = N}` of
//     an N-element %x by %x and erase it.
//  2. In every function, walk the ops backwards and erase each op with a
//     result that nothing reads and the function does not return, unless it
//     writes the KV cache (kv_write and matmul_qkv_rope_kv stay; attention
//     only reads it, so an unused one goes). Walking backwards visits every
//     user before its operands, so one walk reaches the fixed point; the walk
//     is repeated until it erases nothing, which guards that claim.
//  3. Remove the weights no function and no derived weight uses.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "passes/Pass.h"

namespace llamac::passes {

std::unique_ptr<Pass> createCanonicalizePass();

} // namespace llamac::passes
