// Tensor parallel plans on GPUs through NCCL. With one GPU, a --tp 1 plan runs
// the whole multi-GPU path (NCCL communicator, rank threads, collectives
// captured in the graph) and must match the CPU executor; with N >= 2 GPUs,
// --tp 2 and --tp 4 (as far as GPUs allow) must give one GPU's greedy tokens
// and logits within 1e-5. Skips without a GPU or without NCCL. The plans are
// compiled by the llamac binary ($LLAMAC_TOOLS, or the build's tools/).

#include "runtime/Engine.h"
#include "runtime/cuda/CudaDriver.h"
#include "runtime/cuda/CudaEngine.h"
#include "runtime/cuda/Nccl.h"
#include "tests/support/Errors.h"
#include "tests/support/TestModels.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>

using namespace llamac;

namespace {

std::string toolsDir() {
  if (const char *dir = std::getenv("LLAMAC_TOOLS")) return dir;
  return std::string(LLAMAC_BINARY_DIR) + "/tools";
}

TEST(Nccl, LoadsWhereInstalled) {
  auto nccl = runtime::cuda::Nccl::load();
  if (!nccl) GTEST_SKIP() << llvm::toString(nccl.takeError());
  EXPECT_GE(nccl->version, 20900);
  std::printf("NCCL %s from %s\n", nccl->versionText().c_str(), nccl->path.c_str());
}

class TensorParallelGpu : public ::testing::Test {
protected:
  void SetUp() override {
    auto driver = runtime::cuda::CudaDriver::load();
    if (!driver) GTEST_SKIP() << "no GPU: " << llvm::toString(driver.takeError());
    auto count = driver->deviceCount();
    if (!count || *count == 0) GTEST_SKIP() << "no GPU";
    gpus_ = *count;
    auto nccl = runtime::cuda::Nccl::load();
    if (!nccl) GTEST_SKIP() << "no NCCL: " << llvm::toString(nccl.takeError());
  }
  int gpus_ = 0;
};

/// A compiled plan with its engine.
struct Loaded {
  runtime::LoadedPlan plan;
  runtime::PlanProgram program;
  std::unique_ptr<runtime::Engine> engine;
};

std::unique_ptr<Loaded> load(const test::TempDir &dir, const std::string &model, const std::string &flags,
                             bool gpu) {
  std::string path = dir.file(model + flags + (gpu ? ".gpu" : ".cpu") + ".pb");
  for (char &c : path)
    if (c == ' ') c = '_';
  std::string cmd = toolsDir() + "/llamac compile " + test::modelPath(model) + " -o " + path + " " + flags;
  if (std::system(cmd.c_str()) != 0) {
    ADD_FAILURE() << cmd;
    return nullptr;
  }
  auto loaded = std::make_unique<Loaded>();
  auto plan = runtime::readPlan(path);
  if (!plan) {
    ADD_FAILURE() << llvm::toString(plan.takeError());
    return nullptr;
  }
  loaded->plan = std::move(*plan);
  auto program = runtime::loadProgram(loaded->plan, path);
  if (!program) {
    ADD_FAILURE() << llvm::toString(program.takeError());
    return nullptr;
  }
  loaded->program = std::move(*program);
  auto engine = gpu ? runtime::cuda::createCudaEngine(loaded->plan, loaded->program, nullptr)
                    : runtime::createCpuEngine(loaded->plan, loaded->program, 0);
  if (!engine) {
    ADD_FAILURE() << llvm::toString(engine.takeError());
    return nullptr;
  }
  loaded->engine = std::move(*engine);
  return loaded;
}

/// `actual` against `expected` over `steps` positions: logits of fixed,
/// awkward inputs within 1e-5, then greedy tokens identical.
void expectSameSteps(runtime::Engine &actual, runtime::Engine &expected, int vocab, int steps,
                     const std::string &what) {
  SCOPED_TRACE(what);
  double worst = 0;
  int token = 1;
  for (int pos = 0; pos < steps; ++pos) {
    auto a = expected.stepLogits(token, pos);
    ASSERT_TRUE(bool(a)) << llvm::toString(a.takeError());
    std::vector<float> reference(a->begin(), a->end());
    auto b = actual.stepLogits(token, pos);
    ASSERT_TRUE(bool(b)) << llvm::toString(b.takeError());
    ASSERT_EQ(int(b->size()), vocab);
    double err = test::relativeError(*b, reference);
    worst = std::max(worst, err);
    EXPECT_LE(err, 1e-5) << "position " << pos;
    token = (pos * 131 + 7) % vocab;
  }
  std::printf("%s: largest relative logit error over %d steps: %.3g (%s)\n", what.c_str(), steps, worst,
              actual.deviceName().c_str());
  int expectedToken = 1, actualToken = 1;
  for (int pos = 0; pos < steps; ++pos) {
    auto e = expected.stepGreedy(expectedToken, pos);
    auto g = actual.stepGreedy(actualToken, pos);
    ASSERT_TRUE(bool(e)) << llvm::toString(e.takeError());
    ASSERT_TRUE(bool(g)) << llvm::toString(g.takeError());
    ASSERT_EQ(*g, *e) << "position " << pos;
    expectedToken = *e;
    actualToken = *g;
  }
}

TEST_F(TensorParallelGpu, OneRankThroughNcclMatchesTheCpu) {
  test::TempDir dir;
  for (const auto &model : test::kRealModels) {
    auto gpu = load(dir, model.file, "--tp 1 --arch sm_90", true);
    auto cpu = load(dir, model.file, "--tp 1 --arch sm_90", false);
    ASSERT_TRUE(gpu && cpu);
    EXPECT_NE(gpu->engine->deviceName().find("tensor parallel over NCCL"), std::string::npos)
        << gpu->engine->deviceName();
    int steps = std::min<int>(64, int(gpu->plan.plan.config().seq_len()));
    expectSameSteps(*gpu->engine, *cpu->engine, int(gpu->plan.plan.config().vocab_size()), steps,
                    std::string(model.file) + " --tp 1 on one GPU vs the CPU");
  }
}

TEST_F(TensorParallelGpu, RanksMatchOneGpu) {
  if (gpus_ < 2) GTEST_SKIP() << "one GPU: --tp 2 needs two";
  test::TempDir dir;
  for (const auto &model : test::kRealModels) {
    auto single = load(dir, model.file, "--arch sm_90", true);
    ASSERT_TRUE(single);
    for (int ranks : {2, 4}) {
      if (ranks > gpus_) continue;
      auto split = load(dir, model.file, "--tp " + std::to_string(ranks) + " --arch sm_90", true);
      ASSERT_TRUE(split);
      int steps = std::min<int>(64, int(single->plan.plan.config().seq_len()));
      expectSameSteps(*split->engine, *single->engine, int(single->plan.plan.config().vocab_size()), steps,
                      std::string(model.file) + " --tp " + std::to_string(ranks) + " vs one GPU");
    }
  }
}

} // namespace
