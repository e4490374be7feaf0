//===- tests/support/Numerics.h - Running modules on the CPU for tests ----===//
//
// The numeric half of every pass test: run the CPU executor on a module for a
// few decode steps and compare its logits with another module's.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "frontends/Llama2c.h"
#include "frontends/Llama2cGenerate.h"
#include "ir/IR.h"
#include "runtime/Weights.h"
#include "runtime/cpu/TensorParallelCpuExecutor.h"
#include "tests/support/Errors.h"
#include "tests/support/TestModels.h"

#include "llvm/Support/MemoryBuffer.h"

#include <gtest/gtest.h>

#include <cmath>

namespace llamac::test {

/// A llama2.c checkpoint mapped in memory, with its imported module.
struct LoadedModel {
  std::string path;
  std::unique_ptr<llvm::MemoryBuffer> file;
  std::unique_ptr<ir::Module> module;

  static LoadedModel load(const std::string &path, const frontends::ImportOptions &options = {}) {
    LoadedModel m;
    m.path = path;
    auto buffer = llvm::MemoryBuffer::getFile(path, /*IsText=*/false, /*RequiresNullTerminator=*/false);
    if (!buffer) ADD_FAILURE() << path << ": " << buffer.getError().message();
    else m.file = std::move(*buffer);
    auto module = frontends::importLlama2cFile(path, options);
    if (!module) ADD_FAILURE() << llvm::toString(module.takeError());
    else m.module = std::move(*module);
    return m;
  }
  llvm::StringRef bytes() const { return file->getBuffer(); }
};

/// Logits of @decode after each token of `tokens` (fed at positions 0, 1, ...),
/// of every rank together for a tensor parallel module.
inline std::vector<std::vector<float>> decodeLogits(const ir::Module &m, llvm::StringRef weightsFile,
                                                    llvm::ArrayRef<int> tokens) {
  std::vector<std::vector<float>> out;
  // Every rank of a tensor parallel module, simulated; one for any other.
  auto exec = runtime::TensorParallelCpuExecutor::create(m, {weightsFile}, "weights", 2);
  if (!exec) {
    ADD_FAILURE() << llvm::toString(exec.takeError());
    return out;
  }
  const ir::Function *f = m.function("decode");
  for (size_t pos = 0; pos < tokens.size(); ++pos) {
    if (auto e = (*exec)->step(*f, tokens[pos], int(pos))) {
      ADD_FAILURE() << llvm::toString(std::move(e));
      return out;
    }
    auto logits = (*exec)->outputVector(*f);
    out.emplace_back(logits.begin(), logits.end());
  }
  return out;
}

/// Greedy tokens of @decode_greedy from BOS for `steps` positions.
inline std::vector<int> greedyTokens(const ir::Module &m, llvm::StringRef weightsFile, int steps) {
  std::vector<int> tokens;
  auto exec = runtime::TensorParallelCpuExecutor::create(m, {weightsFile}, "weights", 2);
  if (!exec) {
    ADD_FAILURE() << llvm::toString(exec.takeError());
    return tokens;
  }
  const ir::Function *f = m.function("decode_greedy");
  int token = 1;
  for (int pos = 0; pos < steps; ++pos) {
    if (auto e = (*exec)->step(*f, token, pos)) {
      ADD_FAILURE() << llvm::toString(std::move(e));
      return tokens;
    }
    token = (*exec)->outputToken(*f);
    tokens.push_back(token);
  }
  return tokens;
}

inline void expectLogitsClose(const std::vector<std::vector<float>> &actual,
                              const std::vector<std::vector<float>> &expected, double tolerance,
                              llvm::StringRef what) {
  ASSERT_EQ(actual.size(), expected.size()) << what.str();
  for (size_t s = 0; s < expected.size(); ++s) {
    ASSERT_EQ(actual[s].size(), expected[s].size()) << what.str();
    double err = relativeError(actual[s], expected[s]);
    EXPECT_LE(err, tolerance) << what.str() << ": step " << s << " relative error " << err;
  }
}

/// Random-weight shapes that exercise GQA, MQA, an unshared classifier and
/// sizes that are not multiples of anything.
struct RandomShape {
  const char *name;
  frontends::Llama2cConfig config;
};
inline const RandomShape kRandomShapes[] = {
    {"gqa", {64, 160, 2, 8, 2, 128, 32, true}},
    {"mqa", {64, 128, 2, 4, 1, 96, 32, true}},
    {"unshared", {48, 128, 2, 4, 4, 100, 32, false}},
    {"odd", {96, 250, 2, 3, 3, 257, 24, false}},
};

/// Writes a random model of `shape` into `dir` and returns its path.
inline std::string makeRandomModel(const TempDir &dir, const RandomShape &shape, uint64_t seed = 7) {
  std::string path = dir.file(std::string(shape.name) + ".bin");
  if (auto e = frontends::generateLlama2cModel(shape.config, seed, path, 2))
    ADD_FAILURE() << llvm::toString(std::move(e));
  return path;
}

/// A fixed token sequence valid for any vocabulary of at least 96 tokens.
inline std::vector<int> sampleTokens(int vocab, int n = 8) {
  std::vector<int> t;
  for (int i = 0; i < n; ++i) t.push_back(i == 0 ? 1 : (i * 37 + 11) % vocab);
  return t;
}

} // namespace llamac::test
