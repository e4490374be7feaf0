//===- tools/PlanDump.h - `llamac dump` ------------------------*- C++ -*-===//
#pragma once

#include "runtime/plan/plan.pb.h"

#include "llvm/Support/Error.h"
#include "llvm/Support/raw_ostream.h"

namespace llamac::tools {

enum class DumpKind { Summary, Ir, Memory, Dot };

/// Prints one view of a plan. Summary: the model, sizes and the ops of one
/// decode step grouped by layer. Memory: every arena buffer with its offset,
/// size and live range. Dot: Graphviz of each function's data flow.
llvm::Error dumpPlan(const plan::Plan &p, llvm::StringRef planName, DumpKind kind, llvm::raw_ostream &os);

} // namespace llamac::tools
