//===- passes/PartitionTensorParallel.h - Megatron-style tensor parallelism -*- C++ -*-===//
//
// Partitions a module for N ranks (GPUs of one host). The result is one SPMD
// module (`tensor_parallel N`) whose types are one rank's: every rank runs the
// same ops on its own shard of the weights and of the KV cache, and the ranks
// meet only in collective ops. Per layer (Megatron-LM):
//
//   - QKV and gate/up (w1/w3) are split by output rows: rank r computes heads
//     [r H/N, (r+1) H/N) and KV heads likewise (its KV cache holds kv_dim/N),
//     and hidden units [r F/N, (r+1) F/N);
//   - WO and W2 are split by their input (the columns of the weight): each
//     rank's product is a partial sum, all-reduced before the residual add;
//   - the classifier is split by vocabulary rows; @decode all-gathers the
//     logits, @decode_greedy finds each rank's best (logit, index) and reduces
//     those keys to the token with the lowest index among the largest logits,
//     exactly the single-GPU argmax.
//
// Embedding, RMSNorms and the residual stream stay replicated: every rank holds
// the whole residual vector, so the RMS prologues of the fused matmuls work
// unchanged. A fused residual matmul cannot stay fused (only the sum of the
// partial products may meet the residual):
//
//   %8 = matmul_add %7, @l0.wo, %0 : tensor<64xf32>
// ->
//   %8 = matmul %7, @l0.wo.cols : tensor<64xf32>       (@l0.wo.cols = shard_cols(@l0.wo))
//   %9 = all_reduce %8 : tensor<64xf32>
//   %10 = add %0, %9 : tensor<64xf32>
//
// Algorithm: a layout for every value, Replicated or Split (this rank holds
// its 1/N block), decided in op order from the operands' layouts:
//   1. Matmul-family ops with a Replicated input get their weights split by
//      rows (shard_rows) and a Split result; with a Split input (matmul,
//      matmul_add) by columns (shard_cols), then an all_reduce, then the
//      residual add, with a Replicated result. matmul_argmax becomes
//      matmul_argmax_shard + argmax_reduce.
//   2. rope, silu_mul, add, kv_write and attention keep their operands'
//      layout (all operands alike); attention and kv_write need Split (each
//      rank attends over its heads); attention's head counts are divided by N.
//      Slices of a split matmul_qkv take their part's block.
//   3. rmsnorm, rms_normalize and argmax need Replicated: a Split operand is
//      all-gathered first; a Split returned value likewise.
//   4. Result types are re-inferred op by op; the module's KV cache becomes
//      one rank's (kv_dim / N) and the module records N.
// N must divide the heads, the KV heads, the FFN hidden size and the
// vocabulary: anything else is rejected with an error naming the weight or
// the layer (no uneven shards). N = 1 is allowed: a one-rank module with its
// collectives, which runs the multi-GPU code path on one GPU.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "passes/Pass.h"

namespace llamac::passes {

std::unique_ptr<Pass> createPartitionTensorParallelPass(unsigned ranks);

} // namespace llamac::passes
