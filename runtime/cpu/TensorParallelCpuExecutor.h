//===- runtime/cpu/TensorParallelCpuExecutor.h - Simulated ranks -*- C++ -*-===//
//
// Runs a module partitioned for N ranks (ir::Module::tensorParallel) on the
// CPU: one CpuExecutor per rank, each with its rank's weights, arena and KV
// cache slice. A step runs the ranks op by op in lockstep; at a collective
// the executor does what NCCL does on the GPUs, deterministically:
//
//   all_reduce      y = x(rank 0) + x(rank 1) + ... in rank order, on every rank
//   all_gather      y = x(rank 0) | x(rank 1) | ...
//   argmax_reduce   t = the index of the largest key over the ranks
//
// A module that is not partitioned is run as one rank, so engines can use this
// class for every plan.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/cpu/CpuExecutor.h"

namespace llamac::runtime {

class TensorParallelCpuExecutor {
public:
  /// `weightFiles`: one file per rank (a compiled plan's per-rank sidecars),
  /// or one file for every rank (a checkpoint, whose shards are computed
  /// here). `threads` per rank, 0 meaning one per core.
  static llvm::Expected<std::unique_ptr<TensorParallelCpuExecutor>>
  create(const ir::Module &m, llvm::ArrayRef<llvm::StringRef> weightFiles, llvm::StringRef fileName,
         unsigned threads = 0);

  llvm::Error step(const ir::Function &f, int token, int pos);

  /// Rank 0's result; the collectives leave every rank the same one.
  llvm::ArrayRef<float> outputVector(const ir::Function &f) const { return ranks_[0]->outputVector(f); }
  int outputToken(const ir::Function &f) const { return ranks_[0]->outputToken(f); }

  unsigned ranks() const { return ranks_.size(); }
  CpuExecutor &rank(unsigned r) { return *ranks_[r]; }
  /// Over all ranks.
  uint64_t arenaBytes() const;
  uint64_t kvCacheBytes() const;

private:
  TensorParallelCpuExecutor() = default;
  void runCollective(const ir::Op &op);

  std::vector<std::unique_ptr<WeightStore>> weights_;
  std::vector<std::unique_ptr<CpuExecutor>> ranks_;
  std::vector<float> sum_; // all_reduce's accumulator
};

/// Whether `op` is a collective (TensorParallelCpuExecutor runs it across ranks).
bool isCollective(const ir::Op &op);

} // namespace llamac::runtime
