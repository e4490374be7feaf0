// fold-rmsnorm-gain: structure on the import and on small modules, numerics
// on random shapes and the real models.

#include "passes/FoldRmsNormGain.h"
#include "tests/passes/PassTestHarness.h"

using namespace llamac;
using namespace llamac::ir;
using namespace llamac::test;

namespace {

/// The first weight operand of the `nth` op of `kind` in `f`.
const Weight *weightOf(const Function &f, OpKind kind, size_t nth) {
  for (const auto &op : f.ops())
    if (op->kind() == kind && nth-- == 0)
      for (Value *v : op->operands())
        if (auto *w = llvm::dyn_cast<Weight>(v)) return w;
  return nullptr;
}

TEST(FoldRmsNormGain, FoldsEveryNormOfTheImportIntoItsMatmuls) {
  LoadedModel model = LoadedModel::load(modelPath("stories260K.bin"));
  ASSERT_TRUE(model.module);
  Module &m = *model.module;
  const unsigned layers = m.kvCache().layers;
  const size_t weightsBefore = m.weights().size();

  EXPECT_TRUE(runPass(m, passes::createFoldRmsNormGainPass));

  for (const auto &f : m.functions()) {
    SCOPED_TRACE(f->name());
    EXPECT_EQ(countOps(*f, OpKind::RmsNorm), 0u);
    EXPECT_EQ(countOps(*f, OpKind::RmsNormalize), 2 * layers + 1);
    EXPECT_EQ(countOps(*f, OpKind::MatMul), 7 * layers + 1);
    for (const auto &op : f->ops()) {
      if (op->kind() != OpKind::MatMul) continue;
      // Exactly the matmuls reading a normalized vector use a folded weight.
      bool readsNormalized = op->operand(0)->definingOp()->kind() == OpKind::RmsNormalize;
      EXPECT_EQ(llvm::cast<Weight>(op->operand(1))->expr() == WeightExpr::ScaleColumns, readsNormalized)
          << toString(*op, ValueNumbering(*f));
    }
    // The shared classifier is folded; the embedding keeps the original table.
    EXPECT_EQ(weightOf(*f, OpKind::Embedding, 0), m.weight("tok_embeddings"));
    EXPECT_EQ(weightOf(*f, OpKind::MatMul, 7 * layers), m.weight("tok_embeddings.g"));
  }
  // Five folded weights per layer (wq, wk, wv, w1, w3) and the classifier,
  // shared by @decode and @decode_greedy.
  EXPECT_EQ(m.weights().size(), weightsBefore + 5 * layers + 1);
  const Weight *wq = m.weight("l0.wq.g");
  ASSERT_TRUE(wq);
  EXPECT_EQ(wq->expr(), WeightExpr::ScaleColumns);
  EXPECT_EQ(wq->operands()[0], m.weight("l0.wq"));
  EXPECT_EQ(wq->operands()[1], m.weight("l0.rms_att"));
  EXPECT_EQ(m.weight("l1.w3.g")->operands()[1], m.weight("l1.rms_ffn"));
  EXPECT_EQ(m.weight("tok_embeddings.g")->operands()[1], m.weight("rms_final"));
  EXPECT_EQ(weightOf(*m.function("decode"), OpKind::MatMul, 0), wq);
  EXPECT_EQ(weightOf(*m.function("decode_greedy"), OpKind::MatMul, 0), wq);

  std::string once = toString(m);
  EXPECT_FALSE(runPass(m, passes::createFoldRmsNormGainPass));
  EXPECT_EQ(toString(m), once);
}

// One gain, two inputs, the same matrix: one folded weight. The same matrix
// with another gain gets a second one.
TEST(FoldRmsNormGain, MakesOneFoldedWeightPerMatrixAndGain) {
  auto m = parseOrFail(R"(module @t {
  kv_cache layers = 1, seq_len = 4, kv_dim = 8, dtype = f32
  weight @emb : tensor<10x16xf32> = file 0
  weight @g : tensor<16xf32> = file 640
  weight @h : tensor<16xf32> = file 704
  weight @w : tensor<16x16xf32> = file 768
  func @decode(%token : tensor<i32>, %pos : tensor<i32>) -> tensor<16xf32> {
    %x = embedding @emb, %token : tensor<16xf32>
    %a = rmsnorm %x, @g {eps = 1e-05} : tensor<16xf32>
    %b = matmul %a, @w : tensor<16xf32>
    %c = rmsnorm %b, @g {eps = 1e-05} : tensor<16xf32>
    %d = matmul %c, @w : tensor<16xf32>
    %e = rmsnorm %d, @h {eps = 1e-05} : tensor<16xf32>
    %f = matmul %e, @w : tensor<16xf32>
    return %f
  }
})");
  ASSERT_TRUE(m);
  EXPECT_TRUE(runPass(*m, passes::createFoldRmsNormGainPass));
  const Function &f = *m->function("decode");
  EXPECT_EQ(countOps(f, OpKind::RmsNormalize), 3u);
  ASSERT_EQ(m->weights().size(), 6u);
  const Weight *wg = m->weight("w.g"), *wh = m->weight("w.g.1");
  ASSERT_TRUE(wg && wh);
  EXPECT_EQ(wg->operands()[1], m->weight("g"));
  EXPECT_EQ(wh->operands()[1], m->weight("h"));
  EXPECT_EQ(weightOf(f, OpKind::MatMul, 0), wg);
  EXPECT_EQ(weightOf(f, OpKind::MatMul, 1), wg);
  EXPECT_EQ(weightOf(f, OpKind::MatMul, 2), wh);
}

// Each module holds one norm the pass must leave alone.
TEST(FoldRmsNormGain, LeavesNormsItCannotFold) {
  const char *header = R"(module @t {
  kv_cache layers = 1, seq_len = 4, kv_dim = 8, dtype = f32
  weight @emb : tensor<10x16xf32> = file 0
  weight @g : tensor<16xf32> = file 640
  weight @w : tensor<16x16xf32> = file 704
  func @decode(%token : tensor<i32>, %pos : tensor<i32>) -> tensor<16xf32> {
    %x = embedding @emb, %token : tensor<16xf32>
    %y = rmsnorm %x, @g {eps = 1e-05} : tensor<16xf32>
)";
  const char *bodies[] = {
      // An add also reads the normalized vector.
      "    %m = matmul %y, @w : tensor<16xf32>\n    %s = add %y, %m : tensor<16xf32>\n    return %s\n",
      // The normalized vector is returned.
      "    %m = matmul %y, @w : tensor<16xf32>\n    return %y\n",
      // A matmul_add reads it as its residual too.
      "    %m = matmul_add %y, @w, %y : tensor<16xf32>\n    return %m\n",
      // A matmul normalizes it again.
      "    %m = matmul %y, @w {rms_eps = 1e-05} : tensor<16xf32>\n    return %m\n",
      // Nobody reads it (canonicalize's business).
      "    %m = matmul %x, @w : tensor<16xf32>\n    return %m\n",
  };
  for (const char *body : bodies) {
    SCOPED_TRACE(body);
    auto m = parseOrFail(std::string(header) + body + "  }\n}\n");
    ASSERT_TRUE(m);
    expectDoesNotFire(*m, passes::createFoldRmsNormGainPass);
  }
}

TEST(FoldRmsNormGain, KeepsLogitsOnRandomShapes) {
  TempDir dir;
  for (const RandomShape &shape : kRandomShapes)
    expectPassKeepsNumerics(makeRandomModel(dir, shape), rawImport, passes::createFoldRmsNormGainPass, 1e-5, 0);
}

TEST(FoldRmsNormGain, KeepsLogitsAndGreedyTokensOnRealModels) {
  for (const RealModel &model : kRealModels)
    expectPassKeepsNumerics(modelPath(model.file), rawImport, passes::createFoldRmsNormGainPass, 1e-5, 16);
}

} // namespace
