//===- passes/Pipeline.h - The default pass pipeline ------------*- C++ -*-===//
#pragma once

#include "passes/Pass.h"

namespace llamac::passes {

struct PipelineOptions {
  /// 0: no optimization (memory is still planned, without reuse);
  /// 1: clean-up and gain folding; 2: every fusion (the default).
  unsigned optLevel = 2;
  /// The dtype matmul and embedding weights are stored in.
  ir::DType weightDType = ir::DType::f32;
  /// Ranks to partition for (tensor parallelism, `llamac compile --tp N`); 0:
  /// not partitioned. The partitioning runs after the fusions, which it keeps
  /// (except the residual add, which moves after the all-reduce).
  unsigned tensorParallel = 0;
};

/// Appends the default pipeline for `options` to `pm`.
void addDefaultPipeline(PassManager &pm, const PipelineOptions &options);

/// The pass called `name` on the command line (`llamac opt --passes=a,b`).
/// Parameterized passes take their parameter after a colon:
/// "convert-weights:bf16", "partition-tp:2".
llvm::Expected<std::unique_ptr<Pass>> createPassByName(llvm::StringRef name);

/// Every name createPassByName accepts, for --help and error messages.
std::vector<std::string> passNames();

} // namespace llamac::passes
