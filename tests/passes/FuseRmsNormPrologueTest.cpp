// fuse-rmsnorm-prologue: structure after fold-rmsnorm-gain and on small
// modules, numerics on random shapes and the real models.

#include "passes/FoldRmsNormGain.h"
#include "passes/FuseRmsNormPrologue.h"
#include "tests/passes/PassTestHarness.h"

using namespace llamac;
using namespace llamac::ir;
using namespace llamac::test;

namespace {

void foldGains(Module &m) { EXPECT_TRUE(runPass(m, passes::createFoldRmsNormGainPass)); }

TEST(FuseRmsNormPrologue, MovesEveryNormalizationOfTheFoldedImportIntoItsMatmuls) {
  LoadedModel model = LoadedModel::load(modelPath("stories260K.bin"));
  ASSERT_TRUE(model.module);
  Module &m = *model.module;
  const unsigned layers = m.kvCache().layers;
  foldGains(m);

  EXPECT_TRUE(runPass(m, passes::createFuseRmsNormProloguePass));

  for (const auto &f : m.functions()) {
    SCOPED_TRACE(f->name());
    EXPECT_EQ(countOps(*f, OpKind::RmsNormalize), 0u);
    EXPECT_EQ(countOps(*f, OpKind::MatMul), 7 * layers + 1);
    // wq, wk, wv, w1, w3 and the classifier normalize their input; wo and w2
    // read the attention and FFN outputs as they are.
    unsigned normalizing = 0;
    for (const auto &op : f->ops()) {
      if (op->kind() != OpKind::MatMul) continue;
      bool folded = llvm::cast<Weight>(op->operand(1))->expr() == WeightExpr::ScaleColumns;
      EXPECT_EQ(op->hasAttr(AttrKey::rms_eps), folded) << toString(*op, ValueNumbering(*f));
      if (op->hasAttr(AttrKey::rms_eps)) {
        ++normalizing;
        EXPECT_EQ(op->floatAttr(AttrKey::rms_eps), 1e-5);
        // The input is the residual stream: the embedding or an add.
        OpKind input = op->operand(0)->definingOp()->kind();
        EXPECT_TRUE(input == OpKind::Embedding || input == OpKind::Add) << toString(input).str();
      }
    }
    EXPECT_EQ(normalizing, 5 * layers + 1);
  }
  EXPECT_FALSE(runPass(m, passes::createFuseRmsNormProloguePass));
}

TEST(FuseRmsNormPrologue, GivesEveryKindOfMatmulTheEpsilon) {
  auto m = parseOrFail(R"(module @t {
  kv_cache layers = 1, seq_len = 4, kv_dim = 8, dtype = f32
  weight @emb : tensor<10x16xf32> = file 0
  weight @w : tensor<16x16xf32> = file 640
  weight @k : tensor<8x16xf32> = file 1664
  func @decode(%token : tensor<i32>, %pos : tensor<i32>) -> tensor<i32> {
    %x = embedding @emb, %token : tensor<16xf32>
    %y = rms_normalize %x {eps = 0.001} : tensor<16xf32>
    %a = matmul_add %y, @w, %x : tensor<16xf32>
    %b = matmul_swiglu %y, @w, @w : tensor<16xf32>
    %c = matmul_qkv %y, @w, @k, @k : tensor<32xf32>
    %d = matmul_qkv_rope_kv %y, @w, @k, @k, %pos {layer = 0, head_size = 4, theta = 10000.0} : tensor<16xf32>
    %e = matmul_argmax %y, @w : tensor<i32>
    %s1 = add %a, %b : tensor<16xf32>
    %s2 = add %s1, %d : tensor<16xf32>
    %t = slice %c {offset = 0, size = 16} : tensor<16xf32>
    %s3 = add %s2, %t : tensor<16xf32>
    %r = argmax %s3 : tensor<i32>
    return %e
  }
})");
  ASSERT_TRUE(m);
  const Value *x = m->function("decode")->ops()[0]->result();
  EXPECT_TRUE(runPass(*m, passes::createFuseRmsNormProloguePass));
  const Function &f = *m->function("decode");
  EXPECT_EQ(countOps(f, OpKind::RmsNormalize), 0u);
  for (size_t i = 1; i <= 5; ++i) {
    const Op &op = *f.ops()[i];
    SCOPED_TRACE(op.mnemonic().str());
    ASSERT_TRUE(op.hasAttr(AttrKey::rms_eps));
    EXPECT_EQ(op.floatAttr(AttrKey::rms_eps), 0.001);
    EXPECT_EQ(op.operand(0), x);
  }
  EXPECT_EQ(f.ops()[1]->operand(2), x); // the residual of matmul_add is untouched
}

TEST(FuseRmsNormPrologue, LeavesNormalizationsItCannotFuse) {
  const char *header = R"(module @t {
  kv_cache layers = 1, seq_len = 4, kv_dim = 8, dtype = f32
  weight @emb : tensor<10x16xf32> = file 0
  weight @w : tensor<16x16xf32> = file 640
  func @decode(%token : tensor<i32>, %pos : tensor<i32>) -> tensor<16xf32> {
    %x = embedding @emb, %token : tensor<16xf32>
    %y = rms_normalize %x {eps = 1e-05} : tensor<16xf32>
)";
  const char *bodies[] = {
      "    %m = matmul %y, @w : tensor<16xf32>\n    %s = add %y, %m : tensor<16xf32>\n    return %s\n",
      "    %m = matmul %y, @w : tensor<16xf32>\n    return %y\n",
      "    %m = matmul_add %y, @w, %y : tensor<16xf32>\n    return %m\n",
      "    %m = matmul %y, @w {rms_eps = 1e-05} : tensor<16xf32>\n    return %m\n",
      "    %m = matmul %x, @w : tensor<16xf32>\n    return %m\n",
  };
  for (const char *body : bodies) {
    SCOPED_TRACE(body);
    auto m = parseOrFail(std::string(header) + body + "  }\n}\n");
    ASSERT_TRUE(m);
    expectDoesNotFire(*m, passes::createFuseRmsNormProloguePass);
  }
}

TEST(FuseRmsNormPrologue, KeepsLogitsOnRandomShapes) {
  TempDir dir;
  for (const RandomShape &shape : kRandomShapes)
    expectPassKeepsNumerics(makeRandomModel(dir, shape), foldGains, passes::createFuseRmsNormProloguePass, 1e-5, 0);
}

TEST(FuseRmsNormPrologue, KeepsLogitsAndGreedyTokensOnRealModels) {
  for (const RealModel &model : kRealModels)
    expectPassKeepsNumerics(modelPath(model.file), foldGains, passes::createFuseRmsNormProloguePass, 1e-5, 16);
}

} // namespace
