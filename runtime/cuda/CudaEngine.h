//===- runtime/cuda/CudaEngine.h - Running a plan on the GPU ----*- C++ -*-===//
#pragma once

#include "runtime/Engine.h"

#include "llvm/Support/raw_ostream.h"

#include <cuda.h>

#include <functional>

namespace llamac::runtime::cuda {

/// Loads the plan's kernels on the first GPU, uploads the weights once and
/// allocates the arena and KV cache. The error says why the GPU cannot be
/// used (no driver, no device, no kernels in the plan...). Notices (a
/// recompile from source, upload progress) go to `log` when given.
/// A tensor parallel plan (plan.tensor_parallel > 0) runs on that many GPUs
/// instead (runtime/cuda/TensorParallelEngine.h).
llvm::Expected<std::unique_ptr<Engine>> createCudaEngine(const LoadedPlan &plan, const PlanProgram &program,
                                                         llvm::raw_ostream *log);

/// One rank of a tensor parallel plan, as TensorParallelEngine drives it: the
/// GPU, the rank (its weights sidecar and the RANK launch argument) and how to
/// run the plan's collectives (NCCL on the rank's stream, also while the
/// stream is being captured into the step's graph).
struct CudaRank {
  int device = 0;
  unsigned rank = 0;
  std::function<llvm::Error(const plan::Function::Launch::Collective &, CUdeviceptr arena, CUstream)> collective;
};

/// The engine of one rank, set up on the calling thread: its CUDA context is
/// made current there, so every later call must come from that thread. Every
/// rank must be created at the same time (each on its own thread): set-up
/// runs a collective, and so does every step.
llvm::Expected<std::unique_ptr<Engine>> createCudaRankEngine(const LoadedPlan &plan, const PlanProgram &program,
                                                             CudaRank rank, llvm::raw_ostream *log);

} // namespace llamac::runtime::cuda
