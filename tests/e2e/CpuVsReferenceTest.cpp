// Acceptance of the foundations: greedy generation of the CPU executor is
// token-identical to an independent forward pass written straight from the
// file format (tests/reference), unoptimized and after the default pipeline.

#include "ir/Parser.h"
#include "ir/Printer.h"
#include "passes/Pipeline.h"
#include "tests/reference/Llama2cReference.h"
#include "tests/support/Numerics.h"

#include <gtest/gtest.h>

using namespace llamac;

namespace {

std::vector<int> referenceTokens(const std::string &path, int steps) {
  auto ref = reference::ReferenceModel::load(path);
  if (!ref) {
    ADD_FAILURE() << llvm::toString(ref.takeError());
    return {};
  }
  return reference::greedyGenerate(*ref, {1}, steps);
}

void optimize(ir::Module &m, unsigned optLevel) {
  passes::PassManager pm;
  passes::PipelineOptions options;
  options.optLevel = optLevel;
  passes::addDefaultPipeline(pm, options);
  if (auto e = pm.run(m)) ADD_FAILURE() << llvm::toString(std::move(e));
}

void expectSameTokens(const std::string &path, int steps) {
  // The reference stops before a BOS, as run.c does; so do we here.
  std::vector<int> expected = referenceTokens(path, steps);
  ASSERT_FALSE(expected.empty()) << path;
  for (unsigned level : {0u, 1u, 2u}) {
    test::LoadedModel model = test::LoadedModel::load(path);
    ASSERT_TRUE(model.module) << path;
    optimize(*model.module, level);
    std::vector<int> actual = test::greedyTokens(*model.module, model.bytes(), steps);
    actual.erase(std::find(actual.begin(), actual.end(), 1), actual.end());
    EXPECT_EQ(actual, expected) << path << " at -O" << level;
  }
}

TEST(CpuVsReference, RealModels64Steps) {
  for (const auto &model : test::kRealModels) expectSameTokens(test::modelPath(model.file), 64);
}

TEST(CpuVsReference, RandomModels) {
  test::TempDir dir;
  for (const auto &shape : test::kRandomShapes) {
    SCOPED_TRACE(shape.name);
    expectSameTokens(test::makeRandomModel(dir, shape), int(shape.config.seqLen));
  }
}

TEST(CpuVsReference, LogitsMatchUnoptimized) {
  // Unoptimized IR follows run.c op for op: logits agree to float rounding.
  test::LoadedModel model = test::LoadedModel::load(test::modelPath("stories260K.bin"));
  ASSERT_TRUE(model.module);
  auto ref = reference::ReferenceModel::load(model.path);
  ASSERT_TRUE(bool(ref)) << llvm::toString(ref.takeError());
  std::vector<int> tokens = test::sampleTokens(512, 16);
  auto actual = test::decodeLogits(*model.module, model.bytes(), tokens);
  std::vector<std::vector<float>> expected;
  for (size_t pos = 0; pos < tokens.size(); ++pos) expected.push_back(ref->forward(tokens[pos], int(pos)));
  test::expectLogitsClose(actual, expected, 1e-6, "stories260K unoptimized vs reference");
}

TEST(Pipeline, LogitsWithinTolerancePerLevel) {
  // The whole default pipeline at each level against the unoptimized import:
  // logits within 1e-5 relative on random and real models.
  test::TempDir dir;
  std::vector<std::string> paths;
  for (const auto &shape : test::kRandomShapes) paths.push_back(test::makeRandomModel(dir, shape));
  for (const auto &model : test::kRealModels) paths.push_back(test::modelPath(model.file));
  for (const std::string &path : paths) {
    test::LoadedModel raw = test::LoadedModel::load(path);
    ASSERT_TRUE(raw.module) << path;
    int vocab = int(raw.module->function("decode")->results()[0]->type().shape[0]);
    std::vector<int> tokens = test::sampleTokens(vocab, 12);
    auto expected = test::decodeLogits(*raw.module, raw.bytes(), tokens);
    for (unsigned level : {1u, 2u}) {
      test::LoadedModel model = test::LoadedModel::load(path);
      optimize(*model.module, level);
      auto actual = test::decodeLogits(*model.module, model.bytes(), tokens);
      test::expectLogitsClose(actual, expected, 1e-5, path + " -O" + std::to_string(level));
    }
  }
}

TEST(Pipeline, IrRoundTripsForRandomShapes) {
  test::TempDir dir;
  for (const auto &shape : test::kRandomShapes) {
    test::LoadedModel model = test::LoadedModel::load(test::makeRandomModel(dir, shape));
    ASSERT_TRUE(model.module);
    for (int stage = 0; stage < 2; ++stage) {
      if (stage == 1) optimize(*model.module, 2);
      std::string text = ir::toString(*model.module);
      auto parsed = ir::parseModule(text, shape.name);
      ASSERT_TRUE(bool(parsed)) << llvm::toString(parsed.takeError());
      EXPECT_EQ(ir::toString(**parsed), text) << shape.name << (stage ? " optimized" : " imported");
    }
  }
}

} // namespace

TEST(Pipeline, HalfKvCacheStaysCloseToF32) {
  // --kv-dtype f16 / bf16: the CPU executor rounds each cached K and V value
  // as the GPU stores it, and the rounding is really applied (the logits are
  // not identical). With f16 (11-bit significand) every step's logits stay
  // within 1e-2 of the f32 cache. bf16 (8 bits) is coarser: on llama2xs a few
  // steps reach 4.6%, so it is held to a mean of 1e-2 and a worst of 1e-1.
  for (const auto &file : {"stories260K.bin", "llama2xs_gqa_model.bin"}) {
    test::LoadedModel exact = test::LoadedModel::load(test::modelPath(file));
    ASSERT_TRUE(exact.module) << file;
    optimize(*exact.module, 2);
    int vocab = int(exact.module->function("decode")->results()[0]->type().shape[0]);
    std::vector<int> tokens = test::sampleTokens(vocab, 48);
    auto expected = test::decodeLogits(*exact.module, exact.bytes(), tokens);
    for (ir::DType kv : {ir::DType::f16, ir::DType::bf16}) {
      test::LoadedModel half = test::LoadedModel::load(test::modelPath(file));
      half.module->kvCache().dtype = kv;
      optimize(*half.module, 2);
      auto actual = test::decodeLogits(*half.module, half.bytes(), tokens);
      std::string what = std::string(file) + " with a " + ir::toString(kv).str() + " KV cache";
      if (kv == ir::DType::f16) {
        test::expectLogitsClose(actual, expected, 1e-2, what);
      } else {
        double sum = 0, worst = 0;
        for (size_t i = 0; i < expected.size(); ++i) {
          double err = test::relativeError(actual[i], expected[i]);
          sum += err;
          worst = std::max(worst, err);
        }
        EXPECT_LE(sum / expected.size(), 1e-2) << what << ": mean relative error";
        EXPECT_LE(worst, 1e-1) << what << ": worst relative error";
      }
      EXPECT_NE(actual, expected) << what << ": the cache was not rounded";
    }
  }
}
