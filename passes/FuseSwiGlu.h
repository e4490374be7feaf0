//===- passes/FuseSwiGlu.h - Gate and up projections with SwiGLU -*- C++ -*-===//
//
// Fuses the feed-forward block's gate and up matmuls with the silu_mul that
// combines them, so the two hidden-size vectors are never stored.
//
//   %12 = matmul %11, @l0.w1 : tensor<172xf32>
//   %13 = matmul %11, @l0.w3 : tensor<172xf32>
//   %14 = silu_mul %12, %13 : tensor<172xf32>
// ->
//   %12 = matmul_swiglu %11, @l0.w1, @l0.w3 : tensor<172xf32>
//
// silu applies to silu_mul's operand 0, so the gate weight is the one whose
// matmul feeds operand 0: `silu_mul %13, %12` becomes
// `matmul_swiglu %11, @l0.w3, @l0.w1`.
//
// Algorithm, for each function, for each silu_mul in op order:
//   1. Both operands must be results of two different matmuls with the same
//      input and the same rms_eps (or none).
//   2. Each matmul result must have the silu_mul as its only user and must
//      not be returned: otherwise it is needed anyway and fusing gains nothing.
//   3. Build `matmul_swiglu x, gate weight, up weight` where the silu_mul was
//      (after both matmuls, before every use of its result), redirect the
//      silu_mul's users to it, and erase the silu_mul and both matmuls.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "passes/Pass.h"

namespace llamac::passes {

std::unique_ptr<Pass> createFuseSwiGluPass();

} // namespace llamac::passes
