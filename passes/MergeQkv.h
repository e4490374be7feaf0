//===- passes/MergeQkv.h - Merge the Q, K and V projections ------*- C++ -*-===//
//
// Reads x once instead of three times: three matmuls of one input whose
// weights have (Nq, Nkv, Nkv) rows become one `matmul_qkv`, and slices give
// back the three projections.
//
//   %1 = matmul %0, @l0.wq {rms_eps = 1e-05} : tensor<64xf32>
//   %2 = matmul %0, @l0.wk {rms_eps = 1e-05} : tensor<16xf32>
//   %3 = matmul %0, @l0.wv {rms_eps = 1e-05} : tensor<16xf32>
// ->
//   %1 = matmul_qkv %0, @l0.wq, @l0.wk, @l0.wv {rms_eps = 1e-05} : tensor<96xf32>
//   %2 = slice %1 {offset = 0, size = 64} : tensor<64xf32>
//   %3 = slice %1 {offset = 64, size = 16} : tensor<16xf32>
//   %4 = slice %1 {offset = 80, size = 16} : tensor<16xf32>
//
// Algorithm, for each function:
//   1. Group the matmuls by (input, rms_eps or none), each group in op order.
//   2. Walk a group with a window of three (q, k, v): when k and v have the
//      same number of rows, merge them and move past all three; otherwise
//      slide the window by one. Pairs and leftovers stay as they are.
//   3. Build `matmul_qkv` where q was (the earliest of the three, so it comes
//      before every use of the three results), then one slice per projection.
//   4. Redirect each old result to its slice and erase the three matmuls.
// Matmuls are pure, so nothing about KV cache order changes.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "passes/Pass.h"

namespace llamac::passes {

std::unique_ptr<Pass> createMergeQkvPass();

} // namespace llamac::passes
