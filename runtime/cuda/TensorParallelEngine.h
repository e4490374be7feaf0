//===- runtime/cuda/TensorParallelEngine.h - One plan on N GPUs ---*- C++ -*-===//
//
// Runs a tensor parallel plan (plan.tensor_parallel = N) on GPUs 0..N-1 of
// this host, in one process with one thread per GPU:
//
//   - one process, because NCCL's ncclCommInitAll sets up all N communicators
//     from one call (no unique id to exchange, no launcher), and the token a
//     step produces is needed in one place;
//   - one thread per GPU, because a CUDA context is current per thread and
//     NCCL collectives block until every rank has reached them: rank r's
//     engine (CudaEngine as one rank, createCudaRankEngine) is created, steps,
//     and is destroyed on thread r, and the N threads enter each step together.
//
// Each rank captures its step into its own CUDA graph with the NCCL calls
// inside; a step replays the N graphs concurrently and reads the output of
// rank 0 (the collectives leave every rank the same logits or token).
// NVLink multicast (NVLS) is turned off: NCCL_NVLS_ENABLE=0 unless the user
// set it.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/Engine.h"

#include "llvm/Support/raw_ostream.h"

namespace llamac::runtime::cuda {

llvm::Expected<std::unique_ptr<Engine>> createTensorParallelEngine(const LoadedPlan &plan,
                                                                   const PlanProgram &program,
                                                                   llvm::raw_ostream *log);

} // namespace llamac::runtime::cuda
