// canonicalize: the import is already canonical; dead ops, whole slices and
// unused weights added to it or to small modules go, KV cache writes stay.

#include "passes/Canonicalize.h"
#include "tests/passes/PassTestHarness.h"

#include "ir/Builder.h"

using namespace llamac;
using namespace llamac::ir;
using namespace llamac::test;

namespace {

/// Adds to every function what canonicalize removes: a whole slice before
/// the classifier, an unread attention, a chain of unread ops, and an unused
/// weight.
void addClutter(Module &m) {
  const TensorType &table = m.weight("tok_embeddings")->type();
  m.addWeight(std::make_unique<Weight>("clutter", TensorType(DType::f32, {4, table.shape[1]}), 0));
  for (const auto &f : m.functions()) {
    Op *classifier = nullptr, *attention = nullptr;
    for (const auto &op : f->ops()) {
      if (op->kind() == OpKind::MatMul) classifier = op.get();
      if (op->kind() == OpKind::Attention && !attention) attention = op.get();
    }
    ASSERT_TRUE(classifier && attention);
    Builder b(*f, classifier);
    Value *x = classifier->operand(0);
    int64_t dim = x->type().shape[0];
    Value *whole = llvm::cantFail(b.value(OpKind::Slice, {x}, {Attr::integer(AttrKey::offset, 0),
                                                               Attr::integer(AttrKey::size, dim)}));
    llvm::cantFail(b.create(OpKind::Attention, attention->operands(), attention->attrs()));
    Value *dead = llvm::cantFail(b.matmul(whole, m.weight("l0.wq")));
    dead = llvm::cantFail(b.siluMul(dead, x));
    llvm::cantFail(
        b.value(OpKind::Slice, {dead}, {Attr::integer(AttrKey::offset, 1), Attr::integer(AttrKey::size, 2)}));
    classifier->setOperand(0, whole);
  }
  if (llvm::Error e = verify(m)) ADD_FAILURE() << llvm::toString(std::move(e));
}

TEST(Canonicalize, ChangesNothingInTheImport) {
  TempDir dir;
  std::vector<std::string> paths;
  for (const RealModel &model : kRealModels) paths.push_back(modelPath(model.file));
  for (const RandomShape &shape : kRandomShapes) paths.push_back(makeRandomModel(dir, shape));
  for (const std::string &path : paths) {
    SCOPED_TRACE(path);
    LoadedModel model = LoadedModel::load(path);
    ASSERT_TRUE(model.module);
    expectDoesNotFire(*model.module, passes::createCanonicalizePass);
  }
}

TEST(Canonicalize, RemovesWhatWasAddedToTheImport) {
  LoadedModel model = LoadedModel::load(modelPath("stories260K.bin"));
  ASSERT_TRUE(model.module);
  std::string imported = toString(*model.module);
  addClutter(*model.module);
  ASSERT_NE(toString(*model.module), imported);
  EXPECT_TRUE(runPass(*model.module, passes::createCanonicalizePass));
  EXPECT_EQ(toString(*model.module), imported);
}

TEST(Canonicalize, KeepsKvWritesAndWhatIsReturned) {
  auto m = parseOrFail(R"(module @t {
  kv_cache layers = 1, seq_len = 4, kv_dim = 8, dtype = f32
  weight @emb : tensor<10x16xf32> = file 0
  weight @w : tensor<16x16xf32> = file 640
  weight @k : tensor<8x16xf32> = file 1664
  weight @unused : tensor<4x16xf32> = file 2176
  weight @g : tensor<16xf32> = file 2432
  weight @wg : tensor<16x16xf32> = scale_columns(@w, @g)
  weight @only_greedy : tensor<16x16xf32> = file 2496
  func @decode(%token : tensor<i32>, %pos : tensor<i32>) -> tensor<16xf32>, tensor<16xf32> {
    %x = embedding @emb, %token : tensor<16xf32>
    %k = matmul %x, @k : tensor<8xf32>
    %v = matmul %x, @k : tensor<8xf32>
    kv_write %k, %v, %pos {layer = 0}
    %q = matmul_qkv_rope_kv %x, @w, @k, @k, %pos {layer = 0, head_size = 4, theta = 10000.0} : tensor<16xf32>
    %a = attention %x, %pos {layer = 0, n_heads = 4, n_kv_heads = 2, head_size = 4} : tensor<16xf32>
    %d1 = matmul %a, @w : tensor<16xf32>
    %d2 = silu_mul %d1, %d1 : tensor<16xf32>
    %part = slice %x {offset = 0, size = 8} : tensor<8xf32>
    %whole = slice %x {offset = 0, size = 16} : tensor<16xf32>
    %y = matmul %whole, @wg : tensor<16xf32>
    %r = slice %y {offset = 0, size = 16} : tensor<16xf32>
    return %r, %x
  }
  func @decode_greedy(%token : tensor<i32>, %pos : tensor<i32>) -> tensor<i32> {
    %x = embedding @emb, %token : tensor<16xf32>
    %y = matmul %x, @only_greedy : tensor<16xf32>
    %t = argmax %y : tensor<i32>
    return %t
  }
})");
  ASSERT_TRUE(m);
  EXPECT_TRUE(runPass(*m, passes::createCanonicalizePass));
  const Function &f = *m->function("decode");
  std::vector<OpKind> kinds;
  for (const auto &op : f.ops()) kinds.push_back(op->kind());
  EXPECT_EQ(kinds, (std::vector<OpKind>{OpKind::Embedding, OpKind::MatMul, OpKind::MatMul, OpKind::KvWrite,
                                        OpKind::MatMulQkvRopeKv, OpKind::MatMul}));
  const Value *x = f.ops()[0]->result(), *y = f.ops()[5]->result();
  EXPECT_EQ(f.ops()[5]->operand(0), x);
  EXPECT_EQ(f.results()[0], y);
  EXPECT_EQ(f.results()[1], x);
  EXPECT_EQ(m->weight("unused"), nullptr);
  for (const char *kept : {"emb", "w", "k", "g", "wg", "only_greedy"}) EXPECT_NE(m->weight(kept), nullptr) << kept;
  EXPECT_EQ(m->function("decode_greedy")->size(), 3u);

  std::string once = toString(*m);
  EXPECT_FALSE(runPass(*m, passes::createCanonicalizePass));
  EXPECT_EQ(toString(*m), once);
}

TEST(Canonicalize, KeepsLogitsOnRandomShapes) {
  TempDir dir;
  for (const RandomShape &shape : kRandomShapes)
    expectPassKeepsNumerics(makeRandomModel(dir, shape), addClutter, passes::createCanonicalizePass, 0, 0);
}

TEST(Canonicalize, KeepsLogitsAndGreedyTokensOnRealModels) {
  for (const RealModel &model : kRealModels)
    expectPassKeepsNumerics(modelPath(model.file), addClutter, passes::createCanonicalizePass, 0, 16);
}

} // namespace
