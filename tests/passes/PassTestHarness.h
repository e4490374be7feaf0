//===- tests/passes/PassTestHarness.h - Running one pass in a test -------===//
//
// The two halves of a pass test: run a pass on a small module and count ops
// (structural), and run it on a real or random model and compare the CPU
// executor's logits and greedy tokens before and after (numeric).
//
//===----------------------------------------------------------------------===//
#pragma once

#include "ir/Parser.h"
#include "ir/Printer.h"
#include "ir/Verifier.h"
#include "passes/Pass.h"
#include "tests/support/Numerics.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/STLFunctionalExtras.h"

namespace llamac::test {

using PassFactory = std::unique_ptr<passes::Pass> (*)();

/// Runs the pass `create` makes on `m` and verifies the result; returns
/// whether the pass said it changed `m`.
inline bool runPass(ir::Module &m, PassFactory create) {
  std::unique_ptr<passes::Pass> pass = create();
  llvm::Expected<bool> changed = pass->run(m);
  if (!changed) {
    ADD_FAILURE() << pass->name().str() << " failed: " << llvm::toString(changed.takeError());
    return false;
  }
  if (llvm::Error e = ir::verify(m))
    ADD_FAILURE() << "the IR after " << pass->name().str() << " is invalid: " << llvm::toString(std::move(e)) << "\n"
                  << ir::toString(m);
  return *changed;
}

/// The module `text` describes (the form `llamac compile --emit=ir` prints).
inline std::unique_ptr<ir::Module> parseOrFail(llvm::StringRef text) {
  auto m = ir::parseModule(text, "test");
  if (!m) {
    ADD_FAILURE() << llvm::toString(m.takeError());
    return nullptr;
  }
  return std::move(*m);
}

inline unsigned countOps(const ir::Function &f, ir::OpKind kind) {
  return llvm::count_if(f.ops(), [&](const auto &op) { return op->kind() == kind; });
}

/// The pass must not fire on `m`: it reports no change and the printed IR
/// stays the same.
inline void expectDoesNotFire(ir::Module &m, PassFactory create) {
  std::string before = ir::toString(m);
  EXPECT_FALSE(runPass(m, create));
  EXPECT_EQ(ir::toString(m), before);
}

/// The numeric half of a pass test, on the llama2.c model at `path`: imports
/// it, applies `prepare` (prerequisite passes, or extra ops for the pass to
/// remove), then checks that `pass` changes the module, keeps @decode's
/// logits within `tolerance` (relative, per step; 0 means bit-identical) and,
/// when `greedySteps` > 0, keeps @decode_greedy's tokens identical.
inline void expectPassKeepsNumerics(const std::string &path, llvm::function_ref<void(ir::Module &)> prepare,
                                    PassFactory pass, double tolerance, int greedySteps) {
  SCOPED_TRACE(path);
  LoadedModel model = LoadedModel::load(path);
  ASSERT_TRUE(model.module && model.file);
  ir::Module &m = *model.module;
  prepare(m);
  int vocab = int(m.function("decode")->results()[0]->type().shape[0]);
  std::vector<int> tokens = sampleTokens(vocab);

  auto logitsBefore = decodeLogits(m, model.bytes(), tokens);
  std::vector<int> greedyBefore;
  if (greedySteps > 0) greedyBefore = greedyTokens(m, model.bytes(), greedySteps);

  EXPECT_TRUE(runPass(m, pass)) << "the pass did not fire, so this test checks nothing";

  auto logitsAfter = decodeLogits(m, model.bytes(), tokens);
  expectLogitsClose(logitsAfter, logitsBefore, tolerance, path);
  if (greedySteps > 0) {
    EXPECT_EQ(greedyTokens(m, model.bytes(), greedySteps), greedyBefore);
    EXPECT_EQ(greedyBefore.size(), size_t(greedySteps));
  }
}

/// No preparation: the pass runs on the raw import.
inline void rawImport(ir::Module &) {}

} // namespace llamac::test
