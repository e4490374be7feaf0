// fuse-residual-add: structure on the import and on small modules, and
// bit-identical logits on random shapes and the real models.

#include "passes/FoldRmsNormGain.h"
#include "passes/FuseResidualAdd.h"
#include "passes/FuseRmsNormPrologue.h"
#include "tests/passes/PassTestHarness.h"

using namespace llamac;
using namespace llamac::ir;
using namespace llamac::test;

namespace {

TEST(FuseResidualAdd, FusesBothResidualAddsOfEveryLayer) {
  LoadedModel model = LoadedModel::load(modelPath("stories260K.bin"));
  ASSERT_TRUE(model.module);
  Module &m = *model.module;
  const unsigned layers = m.kvCache().layers;

  EXPECT_TRUE(runPass(m, passes::createFuseResidualAddPass));

  for (const auto &f : m.functions()) {
    SCOPED_TRACE(f->name());
    EXPECT_EQ(countOps(*f, OpKind::Add), 0u);
    EXPECT_EQ(countOps(*f, OpKind::MatMulAdd), 2 * layers);
    EXPECT_EQ(countOps(*f, OpKind::MatMul), 5 * layers + 1);
    size_t i = 0;
    for (const auto &op : f->ops()) {
      ++i;
      if (op->kind() != OpKind::MatMulAdd) continue;
      // Layer l's adds become `matmul_add %att, @l.wo, %x` and
      // `matmul_add %h, @l.w2, %x1`, placed where the adds were.
      llvm::StringRef w = op->operand(1)->name();
      EXPECT_TRUE(w.endswith(".wo") || w.endswith(".w2")) << w.str();
      OpKind input = op->operand(0)->definingOp()->kind();
      EXPECT_EQ(input, w.endswith(".wo") ? OpKind::Attention : OpKind::SiluMul);
      EXPECT_LT(f->indexOf(op->operand(0)->definingOp()), i - 1);
      if (const Op *residual = op->operand(2)->definingOp()) EXPECT_LT(f->indexOf(residual), i - 1);
    }
  }
  EXPECT_FALSE(runPass(m, passes::createFuseResidualAddPass));
}

TEST(FuseResidualAdd, FusesEitherOperandOrderAndKeepsTheRmsPrologue) {
  auto m = parseOrFail(R"(module @t {
  kv_cache layers = 1, seq_len = 4, kv_dim = 8, dtype = f32
  weight @emb : tensor<10x16xf32> = file 0
  weight @w : tensor<16x16xf32> = file 640
  func @decode(%token : tensor<i32>, %pos : tensor<i32>) -> tensor<16xf32> {
    %x = embedding @emb, %token : tensor<16xf32>
    %m1 = matmul %x, @w {rms_eps = 1e-05} : tensor<16xf32>
    %r = rope %x, %pos {head_size = 4, theta = 10000.0} : tensor<16xf32>
    %s1 = add %m1, %r : tensor<16xf32>
    %m2 = matmul %s1, @w : tensor<16xf32>
    %s2 = add %s1, %m2 : tensor<16xf32>
    return %s2
  }
})");
  ASSERT_TRUE(m);
  EXPECT_TRUE(runPass(*m, passes::createFuseResidualAddPass));
  const Function &f = *m->function("decode");
  ASSERT_EQ(f.size(), 4u);
  const Op &first = *f.ops()[2], &second = *f.ops()[3];
  ASSERT_EQ(first.kind(), OpKind::MatMulAdd);
  EXPECT_EQ(first.operand(0), f.ops()[0]->result());
  EXPECT_EQ(first.operand(2), f.ops()[1]->result()); // the rope, defined after the matmul was
  ASSERT_TRUE(first.hasAttr(AttrKey::rms_eps));
  EXPECT_EQ(first.floatAttr(AttrKey::rms_eps), 1e-5);
  ASSERT_EQ(second.kind(), OpKind::MatMulAdd);
  EXPECT_EQ(second.operand(0), first.result());
  EXPECT_EQ(second.operand(2), first.result());
  EXPECT_FALSE(second.hasAttr(AttrKey::rms_eps));
  EXPECT_EQ(f.results()[0], second.result());
}

TEST(FuseResidualAdd, LeavesAddsItCannotFuse) {
  const char *header = R"(module @t {
  kv_cache layers = 1, seq_len = 4, kv_dim = 8, dtype = f32
  weight @emb : tensor<10x16xf32> = file 0
  weight @w : tensor<16x16xf32> = file 640
  func @decode(%token : tensor<i32>, %pos : tensor<i32>) -> tensor<16xf32> {
    %x = embedding @emb, %token : tensor<16xf32>
    %m = matmul %x, @w : tensor<16xf32>
)";
  const char *bodies[] = {
      // The matmul has a second user.
      "    %s = add %x, %m : tensor<16xf32>\n    %t = add %s, %m : tensor<16xf32>\n    return %t\n",
      // The matmul's result is returned as well.
      "    %s = add %x, %m : tensor<16xf32>\n    return %m\n",
      // The add reads the matmul twice: no residual.
      "    %s = add %m, %m : tensor<16xf32>\n    return %s\n",
      // Not a plain matmul.
      "    %n = matmul_add %x, @w, %x : tensor<16xf32>\n    %s = add %m, %n : tensor<16xf32>\n"
      "    %t = add %s, %n : tensor<16xf32>\n    return %t\n",
  };
  for (const char *body : bodies) {
    SCOPED_TRACE(body);
    auto m = parseOrFail(std::string(header) + body + "  }\n}\n");
    ASSERT_TRUE(m);
    std::string before = toString(*m);
    bool changed = runPass(*m, passes::createFuseResidualAddPass);
    // The fourth module has one legal fusion (`add %m, %n` absorbs %m) and
    // must leave the other add, whose operands are both fused-op results.
    if (llvm::StringRef(body).contains("matmul_add")) {
      EXPECT_TRUE(changed);
      EXPECT_EQ(countOps(*m->function("decode"), OpKind::Add), 1u);
      EXPECT_EQ(countOps(*m->function("decode"), OpKind::MatMulAdd), 2u);
    } else {
      EXPECT_FALSE(changed);
      EXPECT_EQ(toString(*m), before);
    }
  }
}

// matmul_add computes r + dot exactly as add computed x + matmul.
TEST(FuseResidualAdd, KeepsLogitsBitIdenticalOnRandomShapes) {
  TempDir dir;
  for (const RandomShape &shape : kRandomShapes)
    expectPassKeepsNumerics(makeRandomModel(dir, shape), rawImport, passes::createFuseResidualAddPass, 0, 0);
}

TEST(FuseResidualAdd, KeepsLogitsBitIdenticalAndGreedyTokensOnRealModels) {
  for (const RealModel &model : kRealModels)
    expectPassKeepsNumerics(modelPath(model.file), rawImport, passes::createFuseResidualAddPass, 0, 16);
}

// After the prologue fusion the residual matmuls carry no rms_eps, but the
// pass must still fire and stay exact there.
TEST(FuseResidualAdd, KeepsLogitsBitIdenticalAfterTheRmsNormFusions) {
  auto prepare = [](Module &m) {
    EXPECT_TRUE(runPass(m, passes::createFoldRmsNormGainPass));
    EXPECT_TRUE(runPass(m, passes::createFuseRmsNormProloguePass));
  };
  expectPassKeepsNumerics(modelPath("stories260K.bin"), prepare, passes::createFuseResidualAddPass, 0, 16);
}

} // namespace
