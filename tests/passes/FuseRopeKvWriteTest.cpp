// fuse-rope-kv-write: structure on the import after merge-qkv and on small
// modules (including every way the pattern can be broken), and bit-identical
// logits on random shapes and the real models.

#include "passes/FoldRmsNormGain.h"
#include "passes/FuseRopeKvWrite.h"
#include "passes/MergeQkv.h"
#include "tests/passes/PassTestHarness.h"

using namespace llamac;
using namespace llamac::ir;
using namespace llamac::test;

namespace {

bool runFuseRopeKvWrite(Module &m) { return runPass(m, passes::createFuseRopeKvWritePass); }

void mergeQkv(Module &m) { EXPECT_TRUE(runPass(m, passes::createMergeQkvPass)); }

TEST(FuseRopeKvWrite, FusesEveryLayerOfTheImportAfterMergeQkv) {
  LoadedModel model = LoadedModel::load(modelPath("stories260K.bin"));
  ASSERT_TRUE(model.module);
  Module &m = *model.module;
  const unsigned layers = m.kvCache().layers;
  mergeQkv(m);

  EXPECT_TRUE(runFuseRopeKvWrite(m));

  for (const auto &f : m.functions()) {
    SCOPED_TRACE(f->name());
    for (OpKind gone : {OpKind::MatMulQkv, OpKind::Slice, OpKind::Rope, OpKind::KvWrite})
      EXPECT_EQ(countOps(*f, gone), 0u) << toString(gone).str();
    EXPECT_EQ(countOps(*f, OpKind::MatMulQkvRopeKv), layers);
    // Each layer writes its cache right before its attention reads it, and
    // the layers stay in order.
    int64_t layer = 0;
    for (size_t i = 0; i < f->size(); ++i) {
      const Op &op = *f->ops()[i];
      if (op.kind() != OpKind::MatMulQkvRopeKv) continue;
      std::string prefix = "l" + std::to_string(layer) + ".";
      EXPECT_EQ(op.intAttr(AttrKey::layer), layer);
      EXPECT_EQ(op.intAttr(AttrKey::head_size), 8); // stories260K: dim 64, 8 heads
      EXPECT_EQ(op.floatAttr(AttrKey::theta), 10000.0);
      EXPECT_FALSE(op.hasAttr(AttrKey::rms_eps)); // the import keeps its rmsnorm ops
      EXPECT_EQ(op.operand(0)->definingOp()->kind(), OpKind::RmsNorm);
      EXPECT_EQ(op.operand(1)->name(), prefix + "wq");
      EXPECT_EQ(op.operand(2)->name(), prefix + "wk");
      EXPECT_EQ(op.operand(3)->name(), prefix + "wv");
      EXPECT_EQ(op.operand(4), f->argument("pos"));
      ASSERT_LT(i + 1, f->size());
      const Op &next = *f->ops()[i + 1];
      ASSERT_EQ(next.kind(), OpKind::Attention);
      EXPECT_EQ(next.intAttr(AttrKey::layer), layer);
      EXPECT_EQ(next.operand(0), op.result());
      ++layer;
    }
  }
  EXPECT_FALSE(runFuseRopeKvWrite(m));
}

// x: 16 elements; Q 16 rows (4 heads of 4), K and V 8 rows (2 KV heads).
constexpr const char *kModule = R"(module @t {
  kv_cache layers = 1, seq_len = 4, kv_dim = 8, dtype = f32
  weight @emb : tensor<10x16xf32> = file 0
  weight @wq : tensor<16x16xf32> = file 0
  weight @wk : tensor<8x16xf32> = file 0
  weight @wv : tensor<8x16xf32> = file 0
  func @decode(%token : tensor<i32>, %pos : tensor<i32>) -> tensor<16xf32> {
    %x = embedding @emb, %token : tensor<16xf32>
    %qkv = matmul_qkv %x, @wq, @wk, @wv {rms_eps = 1e-05} : tensor<32xf32>
    %q = slice %qkv {offset = 0, size = 16} : tensor<16xf32>
    %k = slice %qkv {offset = 16, size = 8} : tensor<8xf32>
    %v = slice %qkv {offset = 24, size = 8} : tensor<8xf32>
    %qr = rope %q, %pos {head_size = 4, theta = 10000.0} : tensor<16xf32>
    %kr = rope %k, %pos {head_size = 4, theta = 10000.0} : tensor<8xf32>
    kv_write %kr, %v, %pos {layer = 0}
    %att = attention %qr, %pos {layer = 0, n_heads = 4, n_kv_heads = 2, head_size = 4} : tensor<16xf32>
    return %att
  }
}
)";

/// kModule with each `from` replaced by its `to` (each must occur once).
std::string variant(std::initializer_list<std::pair<llvm::StringRef, llvm::StringRef>> edits) {
  std::string text = kModule;
  for (auto [from, to] : edits) {
    size_t at = text.find(from.str());
    EXPECT_NE(at, std::string::npos) << from.str();
    EXPECT_EQ(text.find(from.str(), at + 1), std::string::npos) << from.str();
    if (at != std::string::npos) text.replace(at, from.size(), to.str());
  }
  return text;
}

/// Adds `line` just before the function's return.
std::string withOpBeforeReturn(llvm::StringRef line) {
  return variant({{"    return", ("    " + line + "\n    return").str()}});
}

TEST(FuseRopeKvWrite, ReplacesThePatternAtTheKvWrite) {
  auto m = parseOrFail(kModule);
  ASSERT_TRUE(m);
  EXPECT_TRUE(runFuseRopeKvWrite(*m));
  const Function &f = *m->function("decode");
  ASSERT_EQ(f.size(), 3u);
  const Op &fused = *f.ops()[1];
  ASSERT_EQ(fused.kind(), OpKind::MatMulQkvRopeKv);
  EXPECT_EQ(fused.operand(0), f.ops()[0]->result());
  EXPECT_EQ(fused.operand(1)->name(), "wq");
  EXPECT_EQ(fused.operand(2)->name(), "wk");
  EXPECT_EQ(fused.operand(3)->name(), "wv");
  EXPECT_EQ(fused.operand(4), f.argument("pos"));
  EXPECT_EQ(fused.floatAttr(AttrKey::rms_eps), 1e-5);
  EXPECT_EQ(fused.intAttr(AttrKey::layer), 0);
  EXPECT_EQ(fused.intAttr(AttrKey::head_size), 4);
  EXPECT_EQ(fused.floatAttr(AttrKey::theta), 10000.0);
  EXPECT_EQ(f.ops()[2]->operand(0), fused.result());
}

TEST(FuseRopeKvWrite, RedirectsEveryUserOfTheRotatedQuery) {
  auto m = parseOrFail(variant({{"-> tensor<16xf32> {", "-> tensor<16xf32>, tensor<16xf32> {"},
                                {"return %att", "%s = add %att, %qr : tensor<16xf32>\n    return %s, %qr"}}));
  ASSERT_TRUE(m);
  EXPECT_TRUE(runFuseRopeKvWrite(*m));
  const Function &f = *m->function("decode");
  ASSERT_EQ(f.size(), 4u);
  Value *q = f.ops()[1]->result();
  EXPECT_EQ(f.ops()[2]->operand(0), q);
  EXPECT_EQ(f.ops()[3]->operand(1), q);
  EXPECT_EQ(f.results()[1], q);
}

TEST(FuseRopeKvWrite, LeavesPatternsItCannotFuse) {
  struct Case {
    const char *name;
    std::string text;
  };
  const Case cases[] = {
      {"head sizes differ", variant({{"%kr = rope %k, %pos {head_size = 4", "%kr = rope %k, %pos {head_size = 8"}})},
      {"thetas differ", variant({{"%kr = rope %k, %pos {head_size = 4, theta = 10000.0}",
                                  "%kr = rope %k, %pos {head_size = 4, theta = 500000.0}"}})},
      {"K rope at another position", variant({{"%kr = rope %k, %pos", "%kr = rope %k, %token"}})},
      {"Q rope at another position", variant({{"%qr = rope %q, %pos", "%qr = rope %q, %token"}})},
      {"k has another user", withOpBeforeReturn("%e = add %k, %k : tensor<8xf32>")},
      {"v has another user", withOpBeforeReturn("%e = add %v, %v : tensor<8xf32>")},
      {"rotated k has another user", withOpBeforeReturn("%e = add %kr, %kr : tensor<8xf32>")},
      {"q has another user", withOpBeforeReturn("%e = add %q, %q : tensor<16xf32>")},
      {"qkv has a fourth user", withOpBeforeReturn("%e = slice %qkv {offset = 0, size = 16} : tensor<16xf32>")},
      {"k is returned", variant({{"-> tensor<16xf32> {", "-> tensor<16xf32>, tensor<8xf32> {"},
                                 {"return %att", "return %att, %k"}})},
      {"v is returned", variant({{"-> tensor<16xf32> {", "-> tensor<16xf32>, tensor<8xf32> {"},
                                 {"return %att", "return %att, %v"}})},
      {"kv_write takes v as K", variant({{"kv_write %kr, %v, %pos", "kv_write %v, %kr, %pos"}})},
      {"k and v slices swapped", variant({{"%k = slice %qkv {offset = 16", "%k = slice %qkv {offset = 24"},
                                          {"%v = slice %qkv {offset = 24", "%v = slice %qkv {offset = 16"}})},
      {"rotated q used before the kv_write",
       variant({{"    kv_write", "    %e = add %qr, %qr : tensor<16xf32>\n    kv_write"}})},
  };
  for (const Case &c : cases) {
    SCOPED_TRACE(c.name);
    auto m = parseOrFail(c.text);
    ASSERT_TRUE(m);
    std::string before = toString(*m);
    EXPECT_FALSE(runFuseRopeKvWrite(*m));
    EXPECT_EQ(toString(*m), before);
  }
}

// The fused op computes the same dot products and the same rotation, so the
// logits stay bit-identical; both sides run merge-qkv first.
TEST(FuseRopeKvWrite, KeepsLogitsBitIdenticalOnRandomShapes) {
  TempDir dir;
  for (const RandomShape &shape : kRandomShapes)
    expectPassKeepsNumerics(makeRandomModel(dir, shape), mergeQkv, passes::createFuseRopeKvWritePass, 0, 0);
}

TEST(FuseRopeKvWrite, KeepsLogitsBitIdenticalAndGreedyTokensOnRealModels) {
  for (const RealModel &model : kRealModels)
    expectPassKeepsNumerics(modelPath(model.file), mergeQkv, passes::createFuseRopeKvWritePass, 0, 16);
}

// After gain folding the QKV matmul normalizes its own input (rms_eps).
TEST(FuseRopeKvWrite, KeepsLogitsBitIdenticalWithRmsEps) {
  auto prepare = [](Module &m) {
    EXPECT_TRUE(runPass(m, passes::createFoldRmsNormGainPass));
    mergeQkv(m);
  };
  expectPassKeepsNumerics(modelPath("llama2xs_gqa_model.bin"), prepare, passes::createFuseRopeKvWritePass, 0, 16);
}

} // namespace
