//===- runtime/cuda/CudaEngine.h - Running a plan on the GPU ----*- C++ -*-===//
#pragma once

#include "runtime/Engine.h"

#include "llvm/Support/raw_ostream.h"

namespace llamac::runtime::cuda {

/// Loads the plan's kernels on the first GPU, uploads the weights once and
/// allocates the arena and KV cache. The error says why the GPU cannot be
/// used (no driver, no device, no kernels in the plan...). Notices (a
/// recompile from source, upload progress) go to `log` when given.
llvm::Expected<std::unique_ptr<Engine>> createCudaEngine(const LoadedPlan &plan, const PlanProgram &program,
                                                         llvm::raw_ostream *log);

} // namespace llamac::runtime::cuda
