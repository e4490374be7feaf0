// fuse-swiglu: structure on the import and on small modules (including the
// operand order of silu_mul and where it must not fire), and bit-identical
// logits on random shapes and the real models.

#include "passes/FuseSwiGlu.h"
#include "tests/passes/PassTestHarness.h"

using namespace llamac;
using namespace llamac::ir;
using namespace llamac::test;

namespace {

bool runFuseSwiGlu(Module &m) { return runPass(m, passes::createFuseSwiGluPass); }

TEST(FuseSwiGlu, FusesTheFeedForwardOfEveryLayer) {
  LoadedModel model = LoadedModel::load(modelPath("stories260K.bin"));
  ASSERT_TRUE(model.module);
  Module &m = *model.module;
  const unsigned layers = m.kvCache().layers;

  EXPECT_TRUE(runFuseSwiGlu(m));

  for (const auto &f : m.functions()) {
    SCOPED_TRACE(f->name());
    EXPECT_EQ(countOps(*f, OpKind::SiluMul), 0u);
    EXPECT_EQ(countOps(*f, OpKind::MatMulSwiglu), layers);
    // Per layer wq, wk, wv, wo, w2 stay, plus the classifier.
    EXPECT_EQ(countOps(*f, OpKind::MatMul), 5 * layers + 1);
    unsigned layer = 0;
    for (const auto &op : f->ops()) {
      if (op->kind() != OpKind::MatMulSwiglu) continue;
      std::string prefix = "l" + std::to_string(layer++) + ".";
      EXPECT_EQ(op->operand(0)->definingOp()->kind(), OpKind::RmsNorm);
      EXPECT_EQ(op->operand(1)->name(), prefix + "w1"); // gate: silu applies to it
      EXPECT_EQ(op->operand(2)->name(), prefix + "w3");
      EXPECT_EQ(op->result()->type().str(), "tensor<172xf32>");
      auto users = f->users(op->result());
      ASSERT_EQ(users.size(), 1u);
      EXPECT_EQ(users[0]->kind(), OpKind::MatMul);
      EXPECT_EQ(users[0]->operand(1)->name(), prefix + "w2");
    }
  }
  EXPECT_FALSE(runFuseSwiGlu(m));
}

constexpr const char *kHeader = R"(module @t {
  kv_cache layers = 1, seq_len = 4, kv_dim = 8, dtype = f32
  weight @emb : tensor<10x16xf32> = file 0
  weight @w1 : tensor<24x16xf32> = file 0
  weight @w3 : tensor<24x16xf32> = file 0
  func @decode(%token : tensor<i32>, %pos : tensor<i32>) -> tensor<24xf32> {
    %x = embedding @emb, %token : tensor<16xf32>
)";

std::unique_ptr<Module> parseBody(llvm::StringRef body) {
  return parseOrFail((kHeader + body + "  }\n}\n").str());
}

TEST(FuseSwiGlu, GateIsTheMatmulFeedingSiluMulsFirstOperand) {
  // silu applies to %b, the w3 matmul: the gate is w3 here.
  auto m = parseBody(R"(
    %a = matmul %x, @w1 {rms_eps = 1e-05} : tensor<24xf32>
    %b = matmul %x, @w3 {rms_eps = 1e-05} : tensor<24xf32>
    %h = silu_mul %b, %a : tensor<24xf32>
    return %h
)");
  ASSERT_TRUE(m);
  EXPECT_TRUE(runFuseSwiGlu(*m));
  const Function &f = *m->function("decode");
  ASSERT_EQ(f.size(), 2u);
  const Op &fused = *f.ops()[1];
  ASSERT_EQ(fused.kind(), OpKind::MatMulSwiglu);
  EXPECT_EQ(fused.operand(0), f.ops()[0]->result());
  EXPECT_EQ(fused.operand(1)->name(), "w3");
  EXPECT_EQ(fused.operand(2)->name(), "w1");
  ASSERT_TRUE(fused.hasAttr(AttrKey::rms_eps));
  EXPECT_EQ(fused.floatAttr(AttrKey::rms_eps), 1e-5);
  EXPECT_EQ(f.results()[0], fused.result());
}

TEST(FuseSwiGlu, LeavesPatternsItCannotFuse) {
  struct Case {
    const char *name, *body;
  };
  const Case cases[] = {
      {"gate has a second user", R"(
    %a = matmul %x, @w1 : tensor<24xf32>
    %b = matmul %x, @w3 : tensor<24xf32>
    %h = silu_mul %a, %b : tensor<24xf32>
    %s = add %h, %a : tensor<24xf32>
    return %s
)"},
      {"up is returned", R"(
    %a = matmul %x, @w1 : tensor<24xf32>
    %b = matmul %x, @w3 : tensor<24xf32>
    %h = silu_mul %a, %b : tensor<24xf32>
    return %b
)"},
      {"different inputs", R"(
    %y = embedding @emb, %pos : tensor<16xf32>
    %a = matmul %x, @w1 : tensor<24xf32>
    %b = matmul %y, @w3 : tensor<24xf32>
    %h = silu_mul %a, %b : tensor<24xf32>
    return %h
)"},
      {"rms_eps on one matmul only", R"(
    %a = matmul %x, @w1 {rms_eps = 1e-05} : tensor<24xf32>
    %b = matmul %x, @w3 : tensor<24xf32>
    %h = silu_mul %a, %b : tensor<24xf32>
    return %h
)"},
      {"different rms_eps", R"(
    %a = matmul %x, @w1 {rms_eps = 1e-05} : tensor<24xf32>
    %b = matmul %x, @w3 {rms_eps = 1e-06} : tensor<24xf32>
    %h = silu_mul %a, %b : tensor<24xf32>
    return %h
)"},
      {"one matmul read twice", R"(
    %a = matmul %x, @w1 : tensor<24xf32>
    %h = silu_mul %a, %a : tensor<24xf32>
    return %h
)"},
      {"up is not a matmul", R"(
    %a = matmul %x, @w1 : tensor<24xf32>
    %b = matmul %x, @w3 : tensor<24xf32>
    %c = add %b, %b : tensor<24xf32>
    %h = silu_mul %a, %c : tensor<24xf32>
    return %h
)"},
  };
  for (const Case &c : cases) {
    SCOPED_TRACE(c.name);
    auto m = parseBody(c.body);
    ASSERT_TRUE(m);
    std::string before = toString(*m);
    EXPECT_FALSE(runFuseSwiGlu(*m));
    EXPECT_EQ(toString(*m), before);
  }
}

// matmul_swiglu computes each row's dot product and silu exactly as the
// unfused ops did, so the logits stay bit-identical.
TEST(FuseSwiGlu, KeepsLogitsBitIdenticalOnRandomShapes) {
  TempDir dir;
  for (const RandomShape &shape : kRandomShapes)
    expectPassKeepsNumerics(makeRandomModel(dir, shape), rawImport, passes::createFuseSwiGluPass, 0, 0);
}

TEST(FuseSwiGlu, KeepsLogitsBitIdenticalAndGreedyTokensOnRealModels) {
  for (const RealModel &model : kRealModels)
    expectPassKeepsNumerics(modelPath(model.file), rawImport, passes::createFuseSwiGluPass, 0, 16);
}

// With silu_mul's operands swapped the model computes silu(W3 x) * (W1 x);
// the fused op must compute the same, with w3 as the gate.
TEST(FuseSwiGlu, KeepsLogitsWhenSiluMulOperandsAreSwapped) {
  auto swapSiluMulOperands = [](Module &m) {
    for (const auto &f : m.functions())
      for (const auto &op : f->ops())
        if (op->kind() == OpKind::SiluMul) {
          Value *a = op->operand(0);
          op->setOperand(0, op->operand(1));
          op->setOperand(1, a);
        }
  };
  expectPassKeepsNumerics(modelPath("stories260K.bin"), swapSiluMulOperands, passes::createFuseSwiGluPass, 0, 16);
}

} // namespace
