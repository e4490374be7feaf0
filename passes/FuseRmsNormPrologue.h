//===- passes/FuseRmsNormPrologue.h - rms_normalize into matmuls -*- C++ -*-===//
//
// After fold-rmsnorm-gain, an rms_normalize feeding only matmuls is a kernel
// of its own that writes a vector each matmul reads back. Each matmul-family
// op can instead normalize its input itself (the rms_eps attribute): the sum
// of squares is recomputed by every consumer, which costs a few hundred
// flops and saves a kernel launch and a round trip through memory.
//
//   %1 = rms_normalize %0 {eps = 1e-05} : tensor<64xf32>
//   %2 = matmul %1, @l0.wq.g : tensor<64xf32>
//   %3 = matmul %1, @l0.wk.g : tensor<32xf32>
// ->
//   %1 = matmul %0, @l0.wq.g {rms_eps = 1e-05} : tensor<64xf32>
//   %2 = matmul %0, @l0.wk.g {rms_eps = 1e-05} : tensor<32xf32>
//
// Algorithm, for every function in order:
//  1. Take each `%y = rms_normalize %x {eps}` whose result is not returned and
//     whose users are all matmul-family ops (the ops that take rms_eps) that
//     read %y as operand 0 only and do not already carry rms_eps.
//  2. Give each user `rms_eps = eps` and make it read %x instead of %y.
//  3. Erase the rms_normalize.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "passes/Pass.h"

namespace llamac::passes {

std::unique_ptr<Pass> createFuseRmsNormProloguePass();

} // namespace llamac::passes
