// fuse-classifier-argmax: fires in @decode_greedy and never in @decode
// (which returns its logits), leaves argmaxes whose logits are needed, and
// keeps the greedy tokens identical.

#include "passes/FuseClassifierArgmax.h"
#include "tests/passes/PassTestHarness.h"

using namespace llamac;
using namespace llamac::ir;
using namespace llamac::test;

namespace {

bool runFuseClassifierArgmax(Module &m) { return runPass(m, passes::createFuseClassifierArgmaxPass); }

std::string printed(const Function &f) {
  std::string s;
  llvm::raw_string_ostream os(s);
  print(f, os);
  return os.str();
}

TEST(FuseClassifierArgmax, FusesOnlyTheGreedyFunction) {
  LoadedModel model = LoadedModel::load(modelPath("stories260K.bin"));
  ASSERT_TRUE(model.module);
  Module &m = *model.module;
  const std::string decodeBefore = printed(*m.function("decode"));
  const unsigned matmulsBefore = countOps(*m.function("decode_greedy"), OpKind::MatMul);

  EXPECT_TRUE(runFuseClassifierArgmax(m));

  EXPECT_EQ(printed(*m.function("decode")), decodeBefore);

  const Function &greedy = *m.function("decode_greedy");
  EXPECT_EQ(countOps(greedy, OpKind::ArgMax), 0u);
  EXPECT_EQ(countOps(greedy, OpKind::MatMulArgMax), 1u);
  EXPECT_EQ(countOps(greedy, OpKind::MatMul), matmulsBefore - 1);
  const Op &last = *greedy.ops().back();
  ASSERT_EQ(last.kind(), OpKind::MatMulArgMax);
  EXPECT_EQ(last.operand(0)->definingOp()->kind(), OpKind::RmsNorm);
  EXPECT_EQ(last.operand(1)->name(), "tok_embeddings"); // stories260K shares its classifier
  EXPECT_EQ(last.result()->type().str(), "tensor<i32>");
  EXPECT_EQ(greedy.results()[0], last.result());
  EXPECT_FALSE(runFuseClassifierArgmax(m));
}

constexpr const char *kHeader = R"(module @t {
  kv_cache layers = 1, seq_len = 4, kv_dim = 8, dtype = f32
  weight @emb : tensor<10x16xf32> = file 0
  weight @wcls : tensor<10x16xf32> = file 0
  weight @w : tensor<16x16xf32> = file 0
)";

std::unique_ptr<Module> parseFunctions(llvm::StringRef functions) {
  return parseOrFail((kHeader + functions + "}\n").str());
}

TEST(FuseClassifierArgmax, KeepsRmsEps) {
  auto m = parseFunctions(R"(
  func @decode_greedy(%token : tensor<i32>, %pos : tensor<i32>) -> tensor<i32> {
    %x = embedding @emb, %token : tensor<16xf32>
    %l = matmul %x, @wcls {rms_eps = 1e-05} : tensor<10xf32>
    %t = argmax %l : tensor<i32>
    return %t
  }
)");
  ASSERT_TRUE(m);
  EXPECT_TRUE(runFuseClassifierArgmax(*m));
  const Function &f = *m->function("decode_greedy");
  ASSERT_EQ(f.size(), 2u);
  const Op &fused = *f.ops()[1];
  ASSERT_EQ(fused.kind(), OpKind::MatMulArgMax);
  EXPECT_EQ(fused.operand(0), f.ops()[0]->result());
  EXPECT_EQ(fused.operand(1)->name(), "wcls");
  ASSERT_TRUE(fused.hasAttr(AttrKey::rms_eps));
  EXPECT_EQ(fused.floatAttr(AttrKey::rms_eps), 1e-5);
  EXPECT_EQ(f.results()[0], fused.result());
}

TEST(FuseClassifierArgmax, LeavesArgmaxesWhoseLogitsAreNeeded) {
  struct Case {
    const char *name, *function;
  };
  const Case cases[] = {
      {"logits returned as well", R"(
  func @decode_greedy(%token : tensor<i32>, %pos : tensor<i32>) -> tensor<i32>, tensor<10xf32> {
    %x = embedding @emb, %token : tensor<16xf32>
    %l = matmul %x, @wcls : tensor<10xf32>
    %t = argmax %l : tensor<i32>
    return %t, %l
  }
)"},
      {"logits read by another op", R"(
  func @decode_greedy(%token : tensor<i32>, %pos : tensor<i32>) -> tensor<i32> {
    %x = embedding @emb, %token : tensor<16xf32>
    %l = matmul %x, @wcls : tensor<10xf32>
    %d = add %l, %l : tensor<10xf32>
    %t = argmax %l : tensor<i32>
    return %t
  }
)"},
      {"argmax of something other than a matmul", R"(
  func @decode_greedy(%token : tensor<i32>, %pos : tensor<i32>) -> tensor<i32> {
    %x = embedding @emb, %token : tensor<16xf32>
    %l = matmul_add %x, @w, %x : tensor<16xf32>
    %t = argmax %l : tensor<i32>
    return %t
  }
)"},
  };
  for (const Case &c : cases) {
    SCOPED_TRACE(c.name);
    auto m = parseFunctions(c.function);
    ASSERT_TRUE(m);
    std::string before = toString(*m);
    EXPECT_FALSE(runFuseClassifierArgmax(*m));
    EXPECT_EQ(toString(*m), before);
  }
}

// @decode is untouched (bit-identical logits); @decode_greedy's logits are
// gone, so compare its tokens over 32 steps (fewer where the cache is shorter).
TEST(FuseClassifierArgmax, KeepsGreedyTokensOnRandomShapes) {
  TempDir dir;
  for (const RandomShape &shape : kRandomShapes) {
    int steps = std::min<int>(32, int(shape.config.seqLen));
    expectPassKeepsNumerics(makeRandomModel(dir, shape), rawImport, passes::createFuseClassifierArgmaxPass, 0, steps);
  }
}

TEST(FuseClassifierArgmax, KeepsGreedyTokensOnRealModels) {
  for (const RealModel &model : kRealModels)
    expectPassKeepsNumerics(modelPath(model.file), rawImport, passes::createFuseClassifierArgmaxPass, 0, 32);
}

} // namespace
