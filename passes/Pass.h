//===- passes/Pass.h - The pass interface and the pass manager --*- C++ -*-===//
//
// A pass rewrites a module and says whether it changed anything. Everything
// a person optimizing the compiler wants to observe (IR before and after a
// pass, timings, verification after every pass) lives in the PassManager,
// never in the passes.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "ir/IR.h"

#include "llvm/Support/raw_ostream.h"

#include <memory>
#include <string>
#include <vector>

namespace llamac::passes {

class Pass {
public:
  virtual ~Pass() = default;
  /// The name used on the command line: "fold-rmsnorm-gain".
  virtual llvm::StringRef name() const = 0;
  /// Rewrites `m`; returns whether anything changed, or an error for input
  /// the pass cannot handle (compiler bugs are asserts instead).
  virtual llvm::Expected<bool> run(ir::Module &m) = 0;
};

struct PassInstrumentation {
  bool printAfterAll = false;
  std::vector<std::string> printBefore; // pass names
  std::vector<std::string> printAfter;
  bool timePasses = false;
  bool verifyEach = true;
  /// Where IR dumps and timings go.
  llvm::raw_ostream *out = &llvm::errs();
};

class PassManager {
public:
  explicit PassManager(PassInstrumentation instrumentation = {}) : inst_(std::move(instrumentation)) {}

  void add(std::unique_ptr<Pass> pass) { passes_.push_back(std::move(pass)); }
  llvm::ArrayRef<std::unique_ptr<Pass>> passes() const { return passes_; }

  /// Runs every pass in order, verifying after each; stops at the first error,
  /// which names the pass.
  llvm::Error run(ir::Module &m);

private:
  PassInstrumentation inst_;
  std::vector<std::unique_ptr<Pass>> passes_;
};

} // namespace llamac::passes
