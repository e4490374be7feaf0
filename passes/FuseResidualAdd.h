//===- passes/FuseResidualAdd.h - Residual adds as matmul epilogues -*- C++ -*-===//
//
// Each layer ends its attention and its FFN with `x = x + W h`. The add is a
// kernel of its own that reads back the vector the matmul just wrote; the
// matmul can add the residual as it writes each row instead.
//
//   %9 = matmul %8, @l0.wo : tensor<64xf32>
//   %10 = add %0, %9 : tensor<64xf32>
// ->
//   %9 = matmul_add %8, @l0.wo, %0 : tensor<64xf32>
//
// The CPU executor computes r[n] + dot(W[n], a) exactly as the add computed
// x[n] + y[n] (float addition commutes), so logits are bit-identical.
//
// Algorithm, for every function in order:
//  1. Take each `%s = add %p, %q` where one operand %m (not both) is the
//     result of `matmul %a, @w` (with or without rms_eps), %m is not
//     returned and the add is its only user; %r is the other operand.
//  2. Insert `%s' = matmul_add %a, @w, %r` with the matmul's attributes right
//     before the add: %a is defined before the matmul and %r before the add,
//     so both still dominate it. Only pure ops move, so no KV cache access is
//     reordered.
//  3. Replace %s by %s' and erase the add and the matmul.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "passes/Pass.h"

namespace llamac::passes {

std::unique_ptr<Pass> createFuseResidualAddPass();

} // namespace llamac::passes
