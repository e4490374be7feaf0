//===- passes/FoldRmsNormGain.h - RMSNorm gains into matmul weights -*- C++ -*-===//
//
// An RMSNorm whose only consumers are matmuls does not need its gain at run
// time: sum_k W[n][k] * (g[k] * x'[k]) = sum_k (W[n][k] * g[k]) * x'[k], so the
// gain is folded into the columns of every consuming weight at compile time
// and the op becomes a plain rms_normalize (which fuse-rmsnorm-prologue can
// then move into the matmuls).
//
//   weight @l0.wq : tensor<64x64xf32> = file 1024
//   %1 = rmsnorm %0, @l0.rms_att {eps = 1e-05} : tensor<64xf32>
//   %2 = matmul %1, @l0.wq : tensor<64xf32>
// ->
//   weight @l0.wq.g : tensor<64x64xf32> = scale_columns(@l0.wq, @l0.rms_att)
//   %1 = rms_normalize %0 {eps = 1e-05} : tensor<64xf32>
//   %2 = matmul %1, @l0.wq.g : tensor<64xf32>
//
// Algorithm, for every function in order:
//  1. Take each `%y = rmsnorm %x, @g {eps}` whose result is not returned and
//     whose users are all matmul-family ops (the ops that take rms_eps) that
//     read %y as their input (operand 0) only, carry no rms_eps of their own,
//     and whose weights all have as many columns as @g has elements.
//  2. Give each weight operand W of those users the weight
//     `@<W>.g = scale_columns(@W, @g)`, created once per (W, g) pair in the
//     module (so @decode and @decode_greedy share it; a weight used elsewhere,
//     such as a classifier shared with the embedding, keeps its original).
//  3. Replace the rmsnorm by `rms_normalize %x {eps}`.
// Weights left unused are removed later by canonicalize.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "passes/Pass.h"

namespace llamac::passes {

std::unique_ptr<Pass> createFoldRmsNormGainPass();

} // namespace llamac::passes
