//===- codegen/PlanWriter.h - Filling and writing plan.pb -------*- C++ -*-===//
//
// The last steps of `llamac compile`: stream every weight the optimized
// module uses into the plan's sidecar (in the dtype and layout the kernels
// read, computed from the checkpoint one tensor at a time), re-point the
// module's weights at the sidecar, and record the IR and its memory plan.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "ir/IR.h"
#include "runtime/plan/PlanFile.h"
#include "runtime/plan/plan.pb.h"

#include "llvm/Support/raw_ostream.h"

namespace llamac::codegen {

/// Materializes the weights of `m` from `source` (the checkpoint's bytes) into
/// `out` and turns each into a file weight at its sidecar offset. Weights no
/// function uses are dropped first. Progress lines go to `progress` when the
/// weights are large (null: silent).
llvm::Error streamWeights(ir::Module &m, llvm::StringRef source, llvm::StringRef sourceName,
                          runtime::WeightsWriter &out, llvm::raw_ostream *progress);

/// The same for a tensor parallel module: `ranks[r]` receives rank r's
/// weights (its shards, and a copy of every replicated weight). Each rank's
/// sidecar gets the same tensors at the same offsets, so the one module
/// points into every rank's sidecar.
llvm::Error streamWeights(ir::Module &m, llvm::StringRef source, llvm::StringRef sourceName,
                          llvm::MutableArrayRef<runtime::WeightsWriter> ranks, llvm::raw_ostream *progress);

/// The memory section of the plan: one buffer per value of every function,
/// with its live range, and the totals.
void describeMemory(const ir::Module &m, uint64_t unplannedBytes, plan::MemoryPlan &out);

} // namespace llamac::codegen
