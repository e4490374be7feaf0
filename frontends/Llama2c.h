//===- frontends/Llama2c.h - llama2.c checkpoint to IR ----------*- C++ -*-===//
//
// Builds the IR of one decode step from a validated llama2.c file. The weights
// stay in the file: each becomes a module constant at its byte offset.
//
//   func @decode(%token, %pos) -> logits       (for sampling)
//   func @decode_greedy(%token, %pos) -> token (the same step, then argmax)
//
// Each layer is written the way llama2.c's run.c computes it, one op per step
// (rmsnorm, three matmuls, two ropes, kv_write, attention, matmul, add,
// rmsnorm, two matmuls, silu_mul, matmul, add), so the unoptimized IR is easy
// to check against the format; passes/ fuse it.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "frontends/Llama2cFile.h"
#include "ir/IR.h"

namespace llamac::frontends {

struct ImportOptions {
  /// Positions the KV cache holds; 0 means the model's seq_len.
  int64_t maxSeqLen = 0;
  double ropeTheta = 10000.0;
  double rmsEps = 1e-5;
  /// The KV cache's element type: f32, or f16/bf16 to halve its bytes.
  ir::DType kvDtype = ir::DType::f32;
};

llvm::Expected<std::unique_ptr<ir::Module>> importLlama2c(const Llama2cFile &file, const ImportOptions &options = {});

/// Reads the header of `path` and imports it.
llvm::Expected<std::unique_ptr<ir::Module>> importLlama2cFile(llvm::StringRef path, const ImportOptions &options = {});

} // namespace llamac::frontends
