// partition-tp: the Megatron split of every layer (structure), the IR round
// trip of a partitioned module, errors for rank counts that do not divide the
// model, and the numeric contract: N simulated ranks on the CPU executor give
// the logits of one (within 1e-5 relative) and the same greedy tokens, on
// random models (GQA included) and on the real ones.

#include "passes/PartitionTensorParallel.h"
#include "passes/Pipeline.h"
#include "tests/passes/PassTestHarness.h"

#include "llvm/Support/Path.h"

#include <cstdio>

using namespace llamac;
using namespace llamac::ir;
using namespace llamac::test;

namespace {

void optimize(Module &m, unsigned optLevel, unsigned ranks) {
  passes::PassManager pm;
  passes::PipelineOptions options;
  options.optLevel = optLevel;
  options.tensorParallel = ranks;
  passes::addDefaultPipeline(pm, options);
  if (auto e = pm.run(m)) ADD_FAILURE() << llvm::toString(std::move(e));
}

/// The error partitioning `m` for `ranks` gives (empty when it succeeds).
std::string partitionError(Module &m, unsigned ranks) {
  auto changed = passes::createPartitionTensorParallelPass(ranks)->run(m);
  if (changed) return "";
  return llvm::toString(changed.takeError());
}

/// Shapes whose heads, KV heads, hidden size and vocabulary split over 2 and 4 ranks.
const RandomShape kSplittableShapes[] = {
    {"gqa8x4", {64, 192, 2, 8, 4, 128, 32, true}},
    {"mha4", {48, 128, 2, 4, 4, 100, 32, false}},
};

TEST(PartitionTensorParallel, SplitsEveryLayer) {
  TempDir dir;
  LoadedModel model = LoadedModel::load(makeRandomModel(dir, kSplittableShapes[0]));
  ASSERT_TRUE(model.module);
  Module &m = *model.module;
  optimize(m, 2, 2);
  EXPECT_EQ(m.tensorParallel(), 2);
  EXPECT_EQ(m.kvCache().kvDim, 32 / 2); // 4 KV heads of 8, 2 per rank
  for (const char *name : {"decode", "decode_greedy"}) {
    SCOPED_TRACE(name);
    const Function &f = *m.function(name);
    EXPECT_EQ(countOps(f, OpKind::AllReduce), 2u * 2u); // WO and W2 of 2 layers
    EXPECT_EQ(countOps(f, OpKind::MatMulAdd), 0u);      // the residual adds follow the all-reduces
    EXPECT_EQ(countOps(f, OpKind::MatMulQkvRopeKv), 2u);
    EXPECT_EQ(countOps(f, OpKind::MatMulSwiglu), 2u);
    for (const auto &op : f.ops())
      if (op->kind() == OpKind::Attention) {
        EXPECT_EQ(op->intAttr(AttrKey::n_heads), 4);
        EXPECT_EQ(op->intAttr(AttrKey::n_kv_heads), 2);
      }
  }
  const Function &decode = *m.function("decode");
  EXPECT_EQ(countOps(decode, OpKind::AllGather), 1u);
  EXPECT_EQ(decode.results()[0]->type().str(), "tensor<128xf32>");
  const Function &greedy = *m.function("decode_greedy");
  EXPECT_EQ(countOps(greedy, OpKind::MatMulArgMaxShard), 1u);
  EXPECT_EQ(countOps(greedy, OpKind::ArgMaxReduce), 1u);
  EXPECT_EQ(countOps(greedy, OpKind::MatMulArgMax), 0u);

  Weight *wo = m.weight("l0.wo.cols");
  ASSERT_TRUE(wo);
  EXPECT_EQ(wo->expr(), WeightExpr::ShardColumns);
  EXPECT_EQ(wo->type().str(), "tensor<64x32xf32>");
  Weight *w1 = m.weight("l0.w1.g.rows");
  ASSERT_TRUE(w1);
  EXPECT_EQ(w1->expr(), WeightExpr::ShardRows);
  EXPECT_EQ(w1->type().str(), "tensor<96x64xf32>");

  std::string text = toString(m);
  EXPECT_NE(text.find("tensor_parallel 2\n"), std::string::npos);
  auto parsed = parseModule(text, "partitioned");
  ASSERT_TRUE(bool(parsed)) << llvm::toString(parsed.takeError());
  EXPECT_EQ(toString(**parsed), text);
}

TEST(PartitionTensorParallel, RejectsRanksThatDoNotDivideTheModel) {
  TempDir dir;
  struct Case {
    RandomShape shape;
    unsigned ranks;
    const char *message;
  } cases[] = {
      {kRandomShapes[1], 2, "it has 4 query heads and 1 KV heads"}, // mqa
      {kRandomShapes[3], 2, "it has 3 query heads and 3 KV heads"}, // odd
      {{"vocab102", {64, 128, 1, 4, 4, 102, 16, false}}, 4, "its 102 vocabulary entries are not a multiple of 4"},
      {{"hidden130", {64, 130, 1, 4, 4, 128, 16, true}}, 4, "its 130 FFN hidden units are not a multiple of 4"},
  };
  for (const Case &c : cases) {
    SCOPED_TRACE(c.shape.name);
    LoadedModel model = LoadedModel::load(makeRandomModel(dir, c.shape));
    ASSERT_TRUE(model.module);
    optimize(*model.module, 2, 0);
    std::string message = partitionError(*model.module, c.ranks);
    EXPECT_NE(message.find(c.message), std::string::npos) << message;
  }

  LoadedModel model = LoadedModel::load(makeRandomModel(dir, kSplittableShapes[0]));
  ASSERT_TRUE(model.module);
  ASSERT_EQ(partitionError(*model.module, 2), "");
  EXPECT_NE(partitionError(*model.module, 2).find("already partitioned for 2 ranks"), std::string::npos);
}

/// N simulated ranks against one: logits within 1e-5, greedy tokens identical.
void expectRanksMatchOne(const std::string &path, unsigned optLevel, unsigned ranks) {
  SCOPED_TRACE(path + " -O" + std::to_string(optLevel) + " over " + std::to_string(ranks) + " ranks");
  LoadedModel single = LoadedModel::load(path), split = LoadedModel::load(path);
  ASSERT_TRUE(single.module && split.module);
  optimize(*single.module, optLevel, 0);
  optimize(*split.module, optLevel, ranks);
  ASSERT_EQ(split.module->tensorParallel(), int64_t(ranks));
  int vocab = int(single.module->function("decode")->results()[0]->type().shape[0]);
  std::vector<int> tokens = sampleTokens(vocab, 12);
  auto expected = decodeLogits(*single.module, single.bytes(), tokens);
  auto actual = decodeLogits(*split.module, split.bytes(), tokens);
  expectLogitsClose(actual, expected, 1e-5, path);
  double worst = 0;
  for (size_t s = 0; s < std::min(actual.size(), expected.size()); ++s)
    worst = std::max(worst, relativeError(actual[s], expected[s]));
  std::printf("%s -O%u, %u ranks: largest relative logit error vs one rank %.3g\n",
              llvm::sys::path::filename(path).str().c_str(), optLevel, ranks, worst);
  int steps = std::min<int>(64, int(single.module->kvCache().seqLen));
  EXPECT_EQ(greedyTokens(*split.module, split.bytes(), steps), greedyTokens(*single.module, single.bytes(), steps));
}

TEST(PartitionTensorParallel, RandomModelsMatchOneRank) {
  TempDir dir;
  for (const RandomShape &shape : kSplittableShapes) {
    std::string path = makeRandomModel(dir, shape);
    for (unsigned ranks : {1u, 2u, 4u}) expectRanksMatchOne(path, 2, ranks);
  }
  // The unfused IR partitions too.
  std::string path = makeRandomModel(dir, kSplittableShapes[0]);
  for (unsigned level : {0u, 1u}) expectRanksMatchOne(path, level, 2);
}

TEST(PartitionTensorParallel, RealModelsMatchOneRank) {
  for (const auto &model : kRealModels)
    for (unsigned ranks : {2u, 4u}) expectRanksMatchOne(modelPath(model.file), 2, ranks);
}

TEST(PartitionTensorParallel, BF16WeightsMatchOneRank) {
  // convert-weights runs after the split: each rank's shard is converted alone.
  LoadedModel single = LoadedModel::load(modelPath("stories260K.bin")),
              split = LoadedModel::load(modelPath("stories260K.bin"));
  for (auto [model, ranks] : {std::pair{&single, 0u}, std::pair{&split, 2u}}) {
    passes::PassManager pm;
    passes::PipelineOptions options;
    options.weightDType = DType::bf16;
    options.tensorParallel = ranks;
    passes::addDefaultPipeline(pm, options);
    if (auto e = pm.run(*model->module)) FAIL() << llvm::toString(std::move(e));
  }
  std::vector<int> tokens = sampleTokens(512, 8);
  expectLogitsClose(decodeLogits(*split.module, split.bytes(), tokens),
                    decodeLogits(*single.module, single.bytes(), tokens), 1e-5, "stories260K bf16");
  EXPECT_EQ(greedyTokens(*split.module, split.bytes(), 48), greedyTokens(*single.module, single.bytes(), 48));
}

} // namespace
