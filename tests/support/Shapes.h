//===- tests/support/Shapes.h - Optimized modules of named model shapes ---===//
//
// The module the default pipeline makes of a named llama2.c shape
// (stories110M, llama-3.2-1b, ...), built from the header alone: no weights
// are read, so tests of large shapes need no model file.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "frontends/Llama2c.h"
#include "frontends/Llama2cGenerate.h"
#include "passes/Pipeline.h"

#include <gtest/gtest.h>

namespace llamac::test {

/// `maxSeqLen` 0: the shape's own seq_len.
inline std::unique_ptr<ir::Module> optimizedShape(llvm::StringRef shape, ir::DType dtype = ir::DType::f32,
                                                  int64_t maxSeqLen = 0) {
  auto config = frontends::lookupLlama2cShape(shape);
  if (!config) {
    ADD_FAILURE() << llvm::toString(config.takeError());
    return nullptr;
  }
  frontends::Llama2cFile file;
  file.path = (shape + ".bin").str();
  file.config = *config;
  auto layout = frontends::computeLlama2cLayout(file.config, file.path);
  if (!layout) {
    ADD_FAILURE() << llvm::toString(layout.takeError());
    return nullptr;
  }
  file.layout = *layout;
  frontends::ImportOptions options;
  options.maxSeqLen = maxSeqLen;
  auto m = frontends::importLlama2c(file, options);
  if (!m) {
    ADD_FAILURE() << llvm::toString(m.takeError());
    return nullptr;
  }
  passes::PassManager pm;
  passes::PipelineOptions pipeline;
  pipeline.weightDType = dtype;
  passes::addDefaultPipeline(pm, pipeline);
  if (auto e = pm.run(**m)) ADD_FAILURE() << llvm::toString(std::move(e));
  return std::move(*m);
}

} // namespace llamac::test
