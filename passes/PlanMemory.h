//===- passes/PlanMemory.h - Static activation arena -------------*- C++ -*-===//
//
// Gives every op result a byte offset in ONE activation arena, so a decode
// step allocates nothing. Functions run one at a time, so each function's
// plan starts at 0 and the arena is the largest of them. Weights and the KV
// cache live elsewhere; only op results are planned.
//
//   %8 = matmul %7, @l0.wo : tensor<64xf32>
//   %9 = add %0, %8 : tensor<64xf32>
// ->
//   arena 2816 bytes
//   %8 = matmul %7, @l0.wo : tensor<64xf32> at 256
//   %9 = add %0, %8 : tensor<64xf32> at 0       (in place over %0, dead after)
//
// Algorithm (a tinygrad-style greedy planner), for each function:
//   1. Liveness: value v defined by op d lives over op indices [d, last use];
//      a returned value lives to the end, an unused one over [d, d].
//   2. Walk the ops in order (intervals sorted by start). At op i:
//      a. In place: `matmul_add %x, @w, %r` may write its result over %r, and
//         `add %a, %b` over %a or %b, when op i is that operand's last use and
//         it is not also operand 0 of the matmul (every output row of a
//         matmul reads all of x, while matmul_add reads r[n] just before
//         writing y[n], and add is elementwise). The result takes over the
//         operand's block.
//      b. Otherwise best fit: the smallest free gap between live blocks that
//         holds the result (lowest offset on ties), else the top of the
//         arena. Sizes and offsets are multiples of 256 bytes.
//      c. Release the blocks of values whose last use is op i.
//      Two values thus share bytes only when their intervals do not overlap.
//   3. The arena is the largest high-water mark over the functions.
// Re-planning a planned module starts from scratch and gives the same plan.
// Without reuse every value gets its own slot (the -O0 plan).
//
//===----------------------------------------------------------------------===//
#pragma once

#include "passes/Pass.h"

namespace llamac::passes {

/// Offsets and block sizes in the arena are multiples of this.
constexpr uint64_t kArenaAlignment = 256;

std::unique_ptr<Pass> createPlanMemoryPass(bool reuse = true);

/// What planning saved, for the driver's "memory reduced from X to Y bytes".
struct MemoryPlanStats {
  /// Every result of the largest function in its own aligned slot.
  uint64_t unplannedBytes = 0;
  /// The planned arena (0 when the module is not planned).
  uint64_t arenaBytes = 0;
  /// The largest single result, unaligned: a lower bound for any plan.
  uint64_t largestValueBytes = 0;
};
MemoryPlanStats memoryPlanStats(const ir::Module &m);

} // namespace llamac::passes
