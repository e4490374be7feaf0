// merge-qkv: where it fires on the imported models, where it must not, and
// that @decode's logits do not change.

#include "passes/MergeQkv.h"
#include "tests/passes/PassTestHarness.h"

using namespace llamac;
using namespace llamac::ir;
using namespace llamac::test;

namespace {

bool runMergeQkv(Module &m) { return runPass(m, passes::createMergeQkvPass); }

/// Weights for the hand-written modules: x has 16 elements, Q 16 rows, K and V 8.
constexpr const char *kHeader = R"(module @t {
  kv_cache layers = 1, seq_len = 4, kv_dim = 8, dtype = f32
  weight @emb : tensor<10x16xf32> = file 0
  weight @wq : tensor<16x16xf32> = file 0
  weight @wk : tensor<8x16xf32> = file 0
  weight @wv : tensor<8x16xf32> = file 0
  weight @w4 : tensor<4x16xf32> = file 0
)";

std::unique_ptr<Module> parseBody(llvm::StringRef body) { return parseOrFail((kHeader + body + "}\n").str()); }

TEST(MergeQkv, MergesOneTriplePerLayerOfTheImport) {
  LoadedModel model = LoadedModel::load(modelPath("stories260K.bin"));
  ASSERT_TRUE(model.module);
  Module &m = *model.module;
  std::map<std::string, unsigned> matmulsBefore;
  for (const auto &f : m.functions()) matmulsBefore[f->name()] = countOps(*f, OpKind::MatMul);
  EXPECT_TRUE(runMergeQkv(m));
  for (const auto &f : m.functions()) {
    SCOPED_TRACE(f->name());
    // stories260K: 5 layers, wq 64 rows, wk and wv 32.
    EXPECT_EQ(countOps(*f, OpKind::MatMulQkv), 5u);
    EXPECT_EQ(countOps(*f, OpKind::Slice), 15u);
    EXPECT_EQ(countOps(*f, OpKind::MatMul), matmulsBefore[f->name()] - 15);
    const Op *qkv = nullptr;
    for (const auto &op : f->ops())
      if (op->kind() == OpKind::MatMulQkv) {
        qkv = op.get();
        break;
      }
    ASSERT_TRUE(qkv);
    EXPECT_EQ(qkv->operand(1)->name(), "l0.wq");
    EXPECT_EQ(qkv->operand(2)->name(), "l0.wk");
    EXPECT_EQ(qkv->operand(3)->name(), "l0.wv");
    EXPECT_EQ(qkv->result()->type().str(), "tensor<128xf32>");
    // The three slices follow it directly: q, k, v.
    size_t i = f->indexOf(qkv);
    const int64_t expected[3][2] = {{0, 64}, {64, 32}, {96, 32}};
    for (unsigned s = 0; s < 3; ++s) {
      const Op &slice = *f->ops()[i + 1 + s];
      ASSERT_EQ(slice.kind(), OpKind::Slice);
      EXPECT_EQ(slice.operand(0), qkv->result());
      EXPECT_EQ(slice.intAttr(AttrKey::offset), expected[s][0]);
      EXPECT_EQ(slice.intAttr(AttrKey::size), expected[s][1]);
    }
    // k feeds the K rope, v the kv_write.
    EXPECT_EQ(f->users(f->ops()[i + 2]->result())[0]->kind(), OpKind::Rope);
    EXPECT_EQ(f->users(f->ops()[i + 3]->result())[0]->kind(), OpKind::KvWrite);
  }
  // Nothing left to merge: the gate/up pair and single matmuls stay.
  EXPECT_FALSE(runMergeQkv(m));
}

TEST(MergeQkv, KeepsRmsEpsOfTheMatmuls) {
  auto m = parseBody(R"(
  func @decode(%token : tensor<i32>, %pos : tensor<i32>) -> tensor<16xf32>, tensor<8xf32>, tensor<8xf32> {
    %x = embedding @emb, %token : tensor<16xf32>
    %q = matmul %x, @wq {rms_eps = 1e-05} : tensor<16xf32>
    %k = matmul %x, @wk {rms_eps = 1e-05} : tensor<8xf32>
    %v = matmul %x, @wv {rms_eps = 1e-05} : tensor<8xf32>
    return %q, %k, %v
  }
)");
  ASSERT_TRUE(m);
  EXPECT_TRUE(runMergeQkv(*m));
  const Function &f = *m->function("decode");
  ASSERT_EQ(f.size(), 5u);
  const Op &qkv = *f.ops()[1];
  ASSERT_EQ(qkv.kind(), OpKind::MatMulQkv);
  ASSERT_TRUE(qkv.hasAttr(AttrKey::rms_eps));
  EXPECT_EQ(qkv.floatAttr(AttrKey::rms_eps), 1e-5);
  // The returned values are redirected to the slices.
  for (unsigned r = 0; r < 3; ++r) EXPECT_EQ(f.results()[r], f.ops()[2 + r]->result());
}

struct NoFireCase {
  const char *name;
  const char *body;
};

const NoFireCase kNoFireCases[] = {
    {"pair", R"(
  func @decode(%token : tensor<i32>, %pos : tensor<i32>) -> tensor<16xf32>, tensor<8xf32> {
    %x = embedding @emb, %token : tensor<16xf32>
    %q = matmul %x, @wq : tensor<16xf32>
    %k = matmul %x, @wk : tensor<8xf32>
    return %q, %k
  }
)"},
    {"k and v of different sizes", R"(
  func @decode(%token : tensor<i32>, %pos : tensor<i32>) -> tensor<16xf32>, tensor<8xf32>, tensor<4xf32> {
    %x = embedding @emb, %token : tensor<16xf32>
    %q = matmul %x, @wq : tensor<16xf32>
    %k = matmul %x, @wk : tensor<8xf32>
    %v = matmul %x, @w4 : tensor<4xf32>
    return %q, %k, %v
  }
)"},
    {"different inputs", R"(
  func @decode(%token : tensor<i32>, %pos : tensor<i32>) -> tensor<16xf32>, tensor<8xf32>, tensor<8xf32> {
    %x = embedding @emb, %token : tensor<16xf32>
    %y = embedding @emb, %pos : tensor<16xf32>
    %q = matmul %x, @wq : tensor<16xf32>
    %k = matmul %x, @wk : tensor<8xf32>
    %v = matmul %y, @wv : tensor<8xf32>
    return %q, %k, %v
  }
)"},
    {"rms_eps on one matmul only", R"(
  func @decode(%token : tensor<i32>, %pos : tensor<i32>) -> tensor<16xf32>, tensor<8xf32>, tensor<8xf32> {
    %x = embedding @emb, %token : tensor<16xf32>
    %q = matmul %x, @wq {rms_eps = 1e-05} : tensor<16xf32>
    %k = matmul %x, @wk {rms_eps = 1e-05} : tensor<8xf32>
    %v = matmul %x, @wv : tensor<8xf32>
    return %q, %k, %v
  }
)"},
    {"different rms_eps", R"(
  func @decode(%token : tensor<i32>, %pos : tensor<i32>) -> tensor<16xf32>, tensor<8xf32>, tensor<8xf32> {
    %x = embedding @emb, %token : tensor<16xf32>
    %q = matmul %x, @wq {rms_eps = 1e-05} : tensor<16xf32>
    %k = matmul %x, @wk {rms_eps = 1e-05} : tensor<8xf32>
    %v = matmul %x, @wv {rms_eps = 1e-06} : tensor<8xf32>
    return %q, %k, %v
  }
)"},
};

TEST(MergeQkv, DoesNotFireOnPairsMismatchedShapesOrInputs) {
  for (const NoFireCase &c : kNoFireCases) {
    SCOPED_TRACE(c.name);
    auto m = parseBody(c.body);
    ASSERT_TRUE(m);
    std::string before = toString(*m);
    EXPECT_FALSE(runMergeQkv(*m));
    EXPECT_EQ(toString(*m), before);
  }
}

TEST(MergeQkv, SlidesPastAMatmulThatStartsNoTriple) {
  // (wq, w4, wk): K and V would differ in size; (w4, wk, wv) merges, with a
  // 4-row Q.
  auto m = parseBody(R"(
  func @decode(%token : tensor<i32>, %pos : tensor<i32>)
      -> tensor<16xf32>, tensor<4xf32>, tensor<8xf32>, tensor<8xf32> {
    %x = embedding @emb, %token : tensor<16xf32>
    %a = matmul %x, @wq : tensor<16xf32>
    %b = matmul %x, @w4 : tensor<4xf32>
    %c = matmul %x, @wk : tensor<8xf32>
    %d = matmul %x, @wv : tensor<8xf32>
    return %a, %b, %c, %d
  }
)");
  ASSERT_TRUE(m);
  EXPECT_TRUE(runMergeQkv(*m));
  const Function &f = *m->function("decode");
  ASSERT_EQ(f.size(), 6u);
  EXPECT_EQ(countOps(f, OpKind::MatMulQkv), 1u);
  EXPECT_EQ(countOps(f, OpKind::MatMul), 1u);
  EXPECT_EQ(f.ops()[1]->kind(), OpKind::MatMul);
  EXPECT_EQ(f.ops()[1]->operand(1)->name(), "wq");
  EXPECT_EQ(f.results()[0], f.ops()[1]->result());
  const Op &qkv = *f.ops()[2];
  ASSERT_EQ(qkv.kind(), OpKind::MatMulQkv);
  EXPECT_EQ(qkv.operand(1)->name(), "w4");
  EXPECT_EQ(qkv.operand(2)->name(), "wk");
  EXPECT_EQ(qkv.operand(3)->name(), "wv");
  for (unsigned r = 1; r < 4; ++r) EXPECT_EQ(f.results()[r], f.ops()[2 + r]->result());
}

// matmul_qkv computes each row's dot product exactly as matmul did, so the
// logits stay bit-identical.
TEST(MergeQkv, KeepsLogitsBitIdenticalOnRandomShapes) {
  TempDir dir;
  for (const RandomShape &shape : kRandomShapes)
    expectPassKeepsNumerics(makeRandomModel(dir, shape), rawImport, passes::createMergeQkvPass, 0, 0);
}

TEST(MergeQkv, KeepsLogitsBitIdenticalAndGreedyTokensOnRealModels) {
  for (const RealModel &model : kRealModels)
    expectPassKeepsNumerics(modelPath(model.file), rawImport, passes::createMergeQkvPass, 0, 16);
}

} // namespace
