// convert-weights: which operands it converts (every matrix and the
// embedding table, once per source weight; never an RMSNorm gain), and how
// close f16 / bf16 weights keep the real models to f32. Also checks
// runtime/Half.h's rounding, which the CPU executor and the weights writer
// use, against numpy and an exact bf16 reference (make_half_golden.py).

#include "passes/ConvertWeights.h"
#include "passes/Pipeline.h"
#include "runtime/Half.h"
#include "tests/passes/PassTestHarness.h"

#include <cmath>
#include <iostream>

using namespace llamac;
using namespace llamac::ir;

namespace {

struct HalfCase {
  uint32_t f32;
  uint16_t f16;
  uint16_t bf16;
};
#include "tests/passes/HalfGolden.inc"

std::unique_ptr<passes::Pass> toF16() { return passes::createConvertWeightsPass(DType::f16); }
std::unique_ptr<passes::Pass> toBf16() { return passes::createConvertWeightsPass(DType::bf16); }
std::unique_ptr<passes::Pass> toF32() { return passes::createConvertWeightsPass(DType::f32); }

TEST(ConvertWeights, ConvertsEveryMatrixOfTheImportOnce) {
  auto model = test::LoadedModel::load(test::modelPath("stories260K.bin"));
  ASSERT_TRUE(model.module);
  Module &m = *model.module;
  size_t weightsBefore = m.weights().size();
  EXPECT_TRUE(test::runPass(m, toF16));

  // stories260K: 7 matrices in each of 5 layers, and the embedding table,
  // which is also the classifier.
  unsigned converted = 0;
  for (const auto &w : m.weights()) {
    if (w->expr() != WeightExpr::Convert) continue;
    ++converted;
    const Weight *source = w->operands()[0];
    EXPECT_EQ(w->name(), source->name() + ".f16");
    EXPECT_EQ(w->type(), TensorType(DType::f16, source->type().shape));
    EXPECT_EQ(source->type().dtype, DType::f32);
  }
  EXPECT_EQ(converted, 36u);
  EXPECT_EQ(m.weights().size(), weightsBefore + 36);

  for (const auto &f : m.functions()) {
    SCOPED_TRACE(f->name());
    for (const auto &op : f->ops()) {
      switch (op->kind()) {
      case OpKind::Embedding: EXPECT_EQ(op->operand(0), m.weight("tok_embeddings.f16")); break;
      case OpKind::MatMul: EXPECT_EQ(op->operand(1)->type().dtype, DType::f16); break;
      case OpKind::RmsNorm: EXPECT_EQ(op->operand(1)->type().dtype, DType::f32); break;
      default: break;
      }
    }
  }
  // The tied classifier reads the same converted table as the embedding.
  const Function &decode = *m.function("decode");
  EXPECT_EQ(decode.results()[0]->definingOp()->operand(1), m.weight("tok_embeddings.f16"));

  std::string once = ir::toString(m);
  EXPECT_FALSE(test::runPass(m, toF16));
  EXPECT_EQ(ir::toString(m), once);
}

TEST(ConvertWeights, F32TargetChangesNothing) {
  auto model = test::LoadedModel::load(test::modelPath("stories260K.bin"));
  ASSERT_TRUE(model.module);
  std::string before = ir::toString(*model.module);
  EXPECT_FALSE(test::runPass(*model.module, toF32));
  EXPECT_EQ(ir::toString(*model.module), before);
}

TEST(ConvertWeights, ConvertsTheOperandsOfFusedOps) {
  auto model = test::LoadedModel::load(test::modelPath("llama2xs_gqa_model.bin"));
  ASSERT_TRUE(model.module);
  Module &m = *model.module;
  passes::PassManager pm;
  passes::addDefaultPipeline(pm, passes::PipelineOptions{});
  if (llvm::Error e = pm.run(m)) FAIL() << llvm::toString(std::move(e));
  EXPECT_TRUE(test::runPass(m, toBf16));
  for (const auto &f : m.functions())
    for (const auto &op : f->ops())
      for (unsigned i = 0; i < op->operands().size(); ++i)
        if (op->operand(i)->type().rank() == 2)
          EXPECT_EQ(op->operand(i)->type().dtype, DType::bf16) << op->mnemonic().str() << " operand " << i;
}

/// The real model at `path` with its matrices in `dtype` (none for f32),
/// after the pipeline at `optLevel` (0: the raw import).
std::vector<std::vector<float>> logitsWith(const test::LoadedModel &model, DType dtype, unsigned optLevel) {
  std::unique_ptr<Module> m = test::parseOrFail(ir::toString(*model.module));
  if (!m) return {};
  if (optLevel > 0) {
    passes::PassManager pm;
    passes::addDefaultPipeline(pm, passes::PipelineOptions{optLevel, dtype});
    if (llvm::Error e = pm.run(*m)) ADD_FAILURE() << llvm::toString(std::move(e));
  } else if (dtype != DType::f32) {
    EXPECT_TRUE(test::runPass(*m, dtype == DType::f16 ? toF16 : toBf16));
  }
  int vocab = int(m->function("decode")->results()[0]->type().shape[0]);
  return test::decodeLogits(*m, model.bytes(), test::sampleTokens(vocab));
}

/// Logits of the real models with f16 matrices within 1e-2 of f32 at every
/// step (||a - b|| / ||b||, METHOD.md's measure), on the raw import and after
/// the -O2 pipeline.
TEST(ConvertWeights, F16WeightsStayWithinOnePercent) {
  for (const test::RealModel &real : test::kRealModels) {
    SCOPED_TRACE(real.file);
    test::LoadedModel model = test::LoadedModel::load(test::modelPath(real.file));
    ASSERT_TRUE(model.module && model.file);
    for (unsigned optLevel : {0u, 2u}) {
      auto reference = logitsWith(model, DType::f32, optLevel);
      auto logits = logitsWith(model, DType::f16, optLevel);
      std::string what = std::string(real.file) + " f16 -O" + std::to_string(optLevel);
      ASSERT_EQ(logits.size(), reference.size()) << what;
      double worst = 0;
      for (size_t s = 0; s < logits.size(); ++s) {
        double err = test::l2RelativeError(logits[s], reference[s]);
        EXPECT_LE(err, 1e-2) << what << ": step " << s;
        worst = std::max(worst, err);
      }
      std::cout << what << ": largest ||a-b||/||b|| " << worst << "\n";
    }
  }
}

/// Mean ||a - b|| / ||b|| of bf16 against f32 logits over 16 sequences of 16
/// steps, for the module `optLevel` makes of `model`.
double meanBf16Error(const test::LoadedModel &model, unsigned optLevel) {
  auto build = [&](DType dtype) {
    std::unique_ptr<Module> m = test::parseOrFail(ir::toString(*model.module));
    if (optLevel > 0) {
      passes::PassManager pm;
      passes::addDefaultPipeline(pm, passes::PipelineOptions{optLevel, dtype});
      if (llvm::Error e = pm.run(*m)) ADD_FAILURE() << llvm::toString(std::move(e));
    } else if (dtype != DType::f32) {
      EXPECT_TRUE(test::runPass(*m, toBf16));
    }
    return m;
  };
  std::unique_ptr<Module> f32 = build(DType::f32), bf16 = build(DType::bf16);
  int vocab = int(f32->function("decode")->results()[0]->type().shape[0]);
  double sum = 0;
  int n = 0;
  for (int sequence = 0; sequence < 16; ++sequence) {
    std::vector<int> tokens{1};
    for (int i = 1; i < 16; ++i) tokens.push_back((sequence * 7919 + i * 104729) % vocab);
    auto reference = test::decodeLogits(*f32, model.bytes(), tokens);
    auto logits = test::decodeLogits(*bf16, model.bytes(), tokens);
    for (size_t s = 0; s < logits.size() && s < reference.size(); ++s, ++n)
      sum += test::l2RelativeError(logits[s], reference[s]);
  }
  return n ? sum / n : INFINITY;
}

/// bf16 keeps 8 bits of mantissa, and whether one step of one model stays
/// within 1e-2 depends on which rounding errors the weights happen to get:
/// on llama2xs, 83 of 100 equally valid roundings (W*c rounded, for random
/// per-column powers of two c, as gain folding does with c = g) put some step
/// of an 8-token sample above 1e-2, on the raw import as after -O2. So the
/// claims checked here are the ones that hold for bf16 itself: the average
/// error stays within 1e-2 on every real model, and the -O2 pipeline (which
/// folds RMSNorm gains into the weights before rounding them) adds no
/// systematic error over the raw import.
TEST(ConvertWeights, Bf16WeightsKeepTheMeanErrorWithinOnePercent) {
  for (const test::RealModel &real : test::kRealModels) {
    SCOPED_TRACE(real.file);
    test::LoadedModel model = test::LoadedModel::load(test::modelPath(real.file));
    ASSERT_TRUE(model.module && model.file);
    double raw = meanBf16Error(model, 0), optimized = meanBf16Error(model, 2);
    std::cout << real.file << " bf16: mean ||a-b||/||b|| raw import " << raw << ", -O2 " << optimized << "\n";
    EXPECT_LE(optimized, 1e-2);
    EXPECT_LE(optimized, 1.25 * raw);
  }
}

TEST(ConvertWeights, GreedyTokensOfStories260K) {
  test::LoadedModel model = test::LoadedModel::load(test::modelPath("stories260K.bin"));
  ASSERT_TRUE(model.module && model.file);
  std::vector<int> reference = test::greedyTokens(*model.module, model.bytes(), 32);
  for (DType dtype : {DType::f16, DType::bf16}) {
    SCOPED_TRACE(toString(dtype).str());
    std::unique_ptr<Module> m = test::parseOrFail(ir::toString(*model.module));
    ASSERT_TRUE(m);
    EXPECT_TRUE(test::runPass(*m, dtype == DType::f16 ? toF16 : toBf16));
    std::vector<int> tokens = test::greedyTokens(*m, model.bytes(), 32);
    ASSERT_EQ(tokens.size(), reference.size());
    size_t same = 0;
    while (same < tokens.size() && tokens[same] == reference[same]) ++same;
    std::cout << "stories260K " << toString(dtype).str() << ": the first " << same << " of 32 greedy tokens match f32\n";
    EXPECT_EQ(tokens, reference);
  }
}

//===----------------------------------------------------------------------===//
// runtime/Half.h
//===----------------------------------------------------------------------===//

bool isNan32(uint32_t bits) { return (bits & 0x7fffffffu) > 0x7f800000u; }

TEST(Half, NamedCasesMatchNumpyAndTheExactBf16Reference) {
  for (const HalfCase &c : kHalfCases) {
    float f = bitsToFloat(c.f32);
    EXPECT_EQ(floatToHalf(f), c.f16) << std::hex << "f32 0x" << c.f32;
    EXPECT_EQ(floatToBf16(f), c.bf16) << std::hex << "f32 0x" << c.f32;
  }
}

/// The inputs make_half_golden.py's sweep_inputs() describes.
std::vector<uint32_t> sweepInputs() {
  std::vector<uint32_t> inputs;
  uint32_t state = kSweepSeed;
  for (uint32_t i = 0; i < kSweepCount; ++i) {
    state ^= state << 13;
    state ^= state >> 17;
    state ^= state << 5;
    uint32_t u = state;
    uint32_t inF16Range = (u & 0x807fffffu) | ((100 + ((u >> 23) & 0xff) % 44) << 23);
    switch (i % 4) {
    case 0: inputs.push_back(u); break;
    case 1: inputs.push_back((inF16Range & ~0x1fffu) | 0x1000u); break;
    case 2: inputs.push_back((u & ~0xffffu) | 0x8000u); break;
    default: inputs.push_back(inF16Range); break;
    }
  }
  return inputs;
}

TEST(Half, SweepMatchesNumpyAndTheExactBf16Reference) {
  uint64_t f16Sum = 0, bf16Sum = 0;
  std::vector<uint32_t> inputs = sweepInputs();
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (isNan32(inputs[i])) continue; // NaNs add 0 on both sides
    float f = bitsToFloat(inputs[i]);
    f16Sum += (i + 1) * uint64_t(floatToHalf(f));
    bf16Sum += (i + 1) * uint64_t(floatToBf16(f));
  }
  EXPECT_EQ(f16Sum, kSweepF16Checksum);
  EXPECT_EQ(bf16Sum, kSweepBf16Checksum);
}

TEST(Half, EveryHalfWidensLikeNumpyAndRoundTrips) {
  uint64_t sum = 0;
  for (uint32_t h = 0; h < 0x10000; ++h) {
    sum += (h + 1) * uint64_t(floatBits(halfToFloat(uint16_t(h))));
    bool nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0;
    if (!nan) EXPECT_EQ(floatToHalf(halfToFloat(uint16_t(h))), h) << std::hex << "f16 0x" << h;
    if (!isNan32(h << 16)) EXPECT_EQ(floatToBf16(bf16ToFloat(uint16_t(h))), h) << std::hex << "bf16 0x" << h;
  }
  EXPECT_EQ(sum, kHalfToFloatChecksum);
}

TEST(Half, NanStaysNan) {
  for (uint32_t bits : {0x7fc00000u, 0xffc00000u, 0x7f800001u, 0x7fbfffffu, 0xffffffffu}) {
    float f = bitsToFloat(bits);
    EXPECT_TRUE(std::isnan(halfToFloat(floatToHalf(f)))) << std::hex << bits;
    EXPECT_TRUE(std::isnan(bf16ToFloat(floatToBf16(f)))) << std::hex << bits;
  }
}

} // namespace
