// Every kernel the code generator emits for the test models compiles with
// NVRTC for every default architecture, as a plan stores it (one
// self-contained translation unit per kernel), without a single warning:
// the three real models, and the stories110M (long context: split attention)
// and Llama-3.2-1B shapes in f32, f16 and bf16, each also as persistent
// kernels (one per function). No GPU needed.

#include "codegen/CudaCodegen.h"
#include "frontends/Llama2c.h"
#include "frontends/Llama2cGenerate.h"
#include "passes/Pipeline.h"
#include "runtime/cuda/Nvrtc.h"
#include "tests/support/Shapes.h"
#include "tests/support/TestModels.h"

#include <gtest/gtest.h>

#include <cstdlib>

using namespace llamac;

namespace {

bool nvrtcExpected() {
  const char *skip = std::getenv("LLAMAC_NO_NVRTC");
  return !(skip && std::string(skip) == "1");
}

void expectKernelsCompile(const ir::Module &m, llvm::StringRef what, bool persistent) {
  if (!runtime::cuda::Nvrtc::load()) {
    if (nvrtcExpected()) FAIL() << "libnvrtc could not be loaded (set LLAMAC_NO_NVRTC=1 where that is expected)";
    GTEST_SKIP() << "no NVRTC";
  }
  // The same path as `llamac compile`: emitCuda turns any NVRTC warning
  // into an error.
  plan::Plan fresh;
  codegen::CudaOptions options;
  options.requireWeightsFile = false;
  options.threads = 2;
  options.persistent = persistent;
  llvm::Error e = codegen::emitCuda(m, options, fresh);
  ASSERT_FALSE(bool(e)) << what.str() << ": " << llvm::toString(std::move(e));
  ASSERT_GT(fresh.kernels_size(), 0) << what.str();
  if (persistent) {
    // Every function is one persistent launch, but advance_greedy, which is
    // one launch already; the kernels the persistent ones absorbed are gone.
    for (const auto &f : fresh.functions()) {
      ASSERT_EQ(f.launches_size(), 1) << what.str() << " @" << f.name();
      EXPECT_EQ(f.launches(0).persistent(), f.name() != "advance_greedy") << what.str() << " @" << f.name();
    }
    EXPECT_EQ(fresh.kernels_size(), fresh.functions_size()) << what.str();
  }
  for (const auto &k : fresh.kernels()) {
    EXPECT_EQ(k.binaries_size(), 4) << k.name();
    EXPECT_FALSE(k.ptx().empty()) << k.name();
  }
}

TEST(CodegenCompile, RealModels) {
  for (const auto &model : test::kRealModels) {
    auto m = frontends::importLlama2cFile(test::modelPath(model.file));
    ASSERT_TRUE(bool(m)) << llvm::toString(m.takeError());
    passes::PassManager pm;
    passes::addDefaultPipeline(pm, {});
    ASSERT_FALSE(bool(pm.run(**m)));
    expectKernelsCompile(**m, model.file, false);
    expectKernelsCompile(**m, std::string(model.file) + " persistent", true);
  }
}

TEST(CodegenCompile, LargeShapesInEveryDtype) {
  for (auto [shape, dtype, seqLen] : {std::tuple{"stories110M", ir::DType::f32, 1024},
                                      std::tuple{"stories110M", ir::DType::f16, 1024},
                                      std::tuple{"llama-3.2-1b", ir::DType::bf16, 2048}}) {
    auto m = test::optimizedShape(shape, dtype, seqLen);
    ASSERT_TRUE(m);
    expectKernelsCompile(*m, std::string(shape) + " " + ir::toString(dtype).str(), false);
    expectKernelsCompile(*m, std::string(shape) + " " + ir::toString(dtype).str() + " persistent", true);
  }
}

} // namespace
