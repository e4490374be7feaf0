//===- passes/ConvertWeights.h - Matrices in a smaller dtype ------*- C++ -*-===//
//
// Stores the matrices of the matmul family and the embedding table in
// `dtype` (f16 or bf16), halving the bytes every decode step streams. The
// conversion is a weight expression, evaluated when the weights are written
// (round to nearest even, runtime/Half.h); the ops compute in f32 as before.
// RMSNorm gains are not matrices and stay f32. An f32 target changes nothing.
//
//   weight @l0.wq : tensor<64x64xf32> = file 33052
//   %2 = matmul %1, @l0.wq : tensor<64xf32>
// ->
//   weight @l0.wq : tensor<64x64xf32> = file 33052
//   weight @l0.wq.f16 : tensor<64x64xf16> = convert(@l0.wq)
//   %2 = matmul %1, @l0.wq.f16 : tensor<64xf32>
//
// Algorithm, over every function's ops in order:
//   1. Collect each operand used as a matrix (operands 1.. of matmul,
//      matmul_add, matmul_swiglu, matmul_qkv, matmul_qkv_rope_kv,
//      matmul_argmax) or as the embedding table (operand 0 of embedding)
//      whose dtype is not `dtype`.
//   2. Create `@<name>.<dtype> = convert(@<name>)` the first time a weight is
//      met, so a weight shared by several ops (a tied embedding and
//      classifier) is converted once, and point the operand at it.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "passes/Pass.h"

namespace llamac::passes {

std::unique_ptr<Pass> createConvertWeightsPass(ir::DType dtype);

} // namespace llamac::passes
