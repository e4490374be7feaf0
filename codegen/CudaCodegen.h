//===- codegen/CudaCodegen.h - Kernels and launch lists for a plan -*- C++ -*-===//
//
// Turns the optimized, memory-planned module (its weights already re-pointed
// into the plan's sidecar) into CUDA:
//
//   1. each op becomes one launch of a kernel instantiated from
//      codegen/kernels/ with the op's sizes baked in (two for matmul_argmax,
//      whose second stage reduces the blocks' keys; a collective for the
//      tensor parallel ops); identical instantiations (the same op shape in
//      every layer) are one kernel; a module with @decode_greedy also gets
//      plan functions that chain greedy steps on the device
//      (greedy_chain_start and greedy_chain_step, or advance_greedy in
//      persistent and tensor parallel plans: kernels/advance.cuh);
//   2. every launch argument is an arena offset, a weight offset, a KV cache
//      offset, the step's token or position, so a captured graph replays
//      unchanged; after the planned arena come state that kernels keep
//      between launches (zeroed once) and scratch that one kernel hands the
//      next;
//   3. NVRTC compiles every kernel for every requested architecture, and to
//      PTX, in parallel; a warning is an error.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "ir/IR.h"
#include "runtime/plan/plan.pb.h"

#include "llvm/Support/raw_ostream.h"

#include <string>
#include <vector>

namespace llamac::codegen {

struct CudaOptions {
  /// Each gets a cubin; the PTX is for the lowest.
  std::vector<std::string> archs = {"sm_80", "sm_86", "sm_89", "sm_90"};
  /// 0: one per core.
  unsigned threads = 0;
  /// false: emit sources and launches without compiling (--emit=cuda).
  bool compile = true;
  /// Weights must already point into the plan's weights file (their offsets
  /// become launch arguments). Off for --emit=cuda and compile-only tests.
  bool requireWeightsFile = true;
  /// Warps per matmul row (1, 2, 4 or 8) for every matmul; 0 picks it per
  /// shape (launch::gemvSplit). For tuning experiments.
  unsigned gemvSplit = 0;
  /// Blocks per span of 128 x N positions of a long context's attention
  /// (N = 1, 2, 4 or 8; a thread block cluster on sm_90); 0 picks it from the heads
  /// (launch::attentionParts). For tuning experiments.
  unsigned attentionParts = 0;
  /// Each function's launches become phases of one persistent kernel
  /// (codegen/kernels/persistent.cuh), where every launch allows it (one
  /// block size, no collectives).
  bool persistent = false;
};

/// Fills plan.kernels and plan.functions, and grows plan.memory's arena by
/// the scratch the launches need.
llvm::Error emitCuda(const ir::Module &m, const CudaOptions &options, plan::Plan &plan);

/// The readable form of what emitCuda produced, for --emit=cuda: each
/// kernel's wrapper with the IR ops it implements, then the launch lists.
void printCuda(const ir::Module &m, const plan::Plan &plan, llvm::raw_ostream &os);

} // namespace llamac::codegen
