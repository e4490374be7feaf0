//===- passes/FuseClassifierArgmax.h - Classifier with greedy sampling -*- C++ -*-===//
//
// When a step returns only the greedy token, the logits are never needed as
// a vector: the classifier matmul and the argmax become one op that keeps
// the running maximum instead of storing vocab-size logits.
//
//   %40 = matmul %39, @tok_embeddings {rms_eps = 1e-05} : tensor<512xf32>
//   %41 = argmax %40 : tensor<i32>
//   return %41
// ->
//   %40 = matmul_argmax %39, @tok_embeddings {rms_eps = 1e-05} : tensor<i32>
//   return %40
//
// @decode returns its logits, so there it does not fire.
//
// Algorithm, for each function, for each argmax in op order:
//   1. Its operand must be a matmul result that the argmax alone reads and
//      that the function does not return.
//   2. Build `matmul_argmax` with the matmul's input, weight and rms_eps
//      where the argmax was, redirect the argmax's users to it and erase the
//      argmax and the matmul.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "passes/Pass.h"

namespace llamac::passes {

std::unique_ptr<Pass> createFuseClassifierArgmaxPass();

} // namespace llamac::passes
