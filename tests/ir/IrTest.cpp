// The IR core: builder checks, verifier, printer/parser round trip.

#include "frontends/Llama2c.h"
#include "ir/Builder.h"
#include "ir/Parser.h"
#include "ir/Printer.h"
#include "ir/Verifier.h"
#include "tests/support/TestModels.h"

#include <gtest/gtest.h>

using namespace llamac;
using namespace llamac::ir;

namespace {

std::string errorText(llvm::Error e) { return llvm::toString(std::move(e)); }

/// A module with one weight matrix [8][16] and a function of the given args.
struct Fixture {
  Module m{"t"};
  Weight *w = m.addWeight(std::make_unique<Weight>("w", TensorType(DType::f32, {8, 16}), 0));
  Weight *g = m.addWeight(std::make_unique<Weight>("g", TensorType(DType::f32, {16}), 512));
  Weight *table = m.addWeight(std::make_unique<Weight>("table", TensorType(DType::f32, {10, 16}), 576));
  Function *f = m.addFunction("decode");
  Value *token = f->addArgument("token", TensorType::scalar(DType::i32));
  Value *pos = f->addArgument("pos", TensorType::scalar(DType::i32));
  Fixture() {
    m.kvCache() = {1, 4, 8, DType::f32};
  }
};

TEST(Builder, InfersMatmulResultType) {
  Fixture t;
  Builder b(*t.f);
  Value *x = llvm::cantFail(b.embedding(t.table, t.token));
  EXPECT_EQ(x->type().str(), "tensor<16xf32>");
  Value *y = llvm::cantFail(b.matmul(x, t.w));
  EXPECT_EQ(y->type().str(), "tensor<8xf32>");
}

TEST(Builder, RejectsMismatchedMatmulAndNamesTheOperand) {
  Fixture t;
  Builder b(*t.f);
  Value *x = llvm::cantFail(b.embedding(t.table, t.token));
  Value *y = llvm::cantFail(b.matmul(x, t.w)); // 8 elements
  auto bad = b.matmul(y, t.w);                 // w wants 16
  ASSERT_FALSE(bad);
  std::string msg = errorText(bad.takeError());
  EXPECT_NE(msg.find("matmul: operand 1 (@w : tensor<8x16xf32>) has 16 columns, the input vector has 8"),
            std::string::npos)
      << msg;
}

TEST(Builder, RejectsActivationAsWeight) {
  Fixture t;
  Builder b(*t.f);
  Value *x = llvm::cantFail(b.embedding(t.table, t.token));
  auto bad = b.rmsNorm(x, x, 1e-5);
  ASSERT_FALSE(bad);
  EXPECT_NE(errorText(bad.takeError()).find("must be a float weight vector of 16 elements"), std::string::npos);
}

TEST(Builder, RejectsBadRopeAndAttentionAttributes) {
  Fixture t;
  Builder b(*t.f);
  Value *x = llvm::cantFail(b.embedding(t.table, t.token));
  EXPECT_FALSE(errorText(b.rope(x, t.pos, 3, 10000).takeError()).empty());  // odd head size
  EXPECT_FALSE(errorText(b.rope(x, t.pos, 6, 10000).takeError()).empty());  // 16 % 6 != 0
  EXPECT_FALSE(errorText(b.attention(x, t.pos, 0, 4, 3, 4).takeError()).empty()); // 4 % 3 != 0
  EXPECT_FALSE(errorText(b.rope(x, x, 8, 10000).takeError()).empty());     // pos must be i32
}

TEST(Verifier, CatchesKvLayerOutOfRange) {
  Fixture t;
  Builder b(*t.f);
  Value *x = llvm::cantFail(b.embedding(t.table, t.token));
  Value *k = llvm::cantFail(b.matmul(x, t.w));
  llvm::cantFail(b.kvWrite(k, k, t.pos, 3));
  t.f->setResults({k});
  std::string msg = errorText(verify(t.m));
  EXPECT_NE(msg.find("layer 3 is outside the KV cache's 1 layers"), std::string::npos) << msg;
}

TEST(Verifier, CatchesUseBeforeDefinition) {
  Fixture t;
  Builder b(*t.f);
  Value *x = llvm::cantFail(b.embedding(t.table, t.token));
  Value *y = llvm::cantFail(b.matmul(x, t.w));
  t.f->setResults({y});
  // Move the matmul before the embedding.
  Op *mm = y->definingOp();
  auto first = t.f->ops().front().get();
  Builder before(*t.f, first);
  Value *early = llvm::cantFail(before.rmsNorm(x, t.g, 1e-5));
  (void)mm;
  t.f->setResults({early});
  std::string msg = errorText(verify(t.m));
  EXPECT_NE(msg.find("in @decode, op 0 (rmsnorm): uses %1 before it is defined"), std::string::npos) << msg;
}

TEST(Verifier, CatchesMissingResult) {
  Fixture t;
  EXPECT_NE(errorText(verify(t.m)).find("returns nothing"), std::string::npos);
}

const char *kSmallModule = R"(module @t {
  kv_cache layers = 1, seq_len = 4, kv_dim = 8, dtype = f32
  weight @w : tensor<8x16xf32> = file 0
  weight @g : tensor<16xf32> = file 512
  weight @table : tensor<10x16xf32> = file 576
  weight @wg : tensor<8x16xf32> = scale_columns(@w, @g)
  weight @wh : tensor<8x16xf16> = convert(@wg)

  func @decode(%token : tensor<i32>, %pos : tensor<i32>) -> tensor<8xf32>, tensor<i32> {
    %0 = embedding @table, %token : tensor<16xf32>
    %1 = matmul %0, @wh {rms_eps = 1e-05} : tensor<8xf32>
    %2 = rope %1, %pos {head_size = 4, theta = 10000.0} : tensor<8xf32>
    kv_write %2, %1, %pos {layer = 0}
    %3 = argmax %2 : tensor<i32>
    return %2, %3
  }
}
)";

TEST(Parser, RoundTripsHandWrittenModule) {
  auto m = parseModule(kSmallModule, "small.ir");
  ASSERT_TRUE(bool(m)) << errorText(m.takeError());
  EXPECT_EQ(toString(**m), kSmallModule);
}

TEST(Parser, RoundTripsMemoryPlan) {
  std::string text = kSmallModule;
  text.replace(text.find("  weight @w "), 0, "  arena 128 bytes\n");
  for (auto [needle, offset] : {std::pair{"tensor<16xf32>\n", "0"}, {"{rms_eps = 1e-05} : tensor<8xf32>\n", "64"},
                                {"theta = 10000.0} : tensor<8xf32>\n", "96"}, {"%3 = argmax %2 : tensor<i32>\n", "0"}}) {
    size_t at = text.find(needle) + std::strlen(needle) - 1;
    text.insert(at, std::string(" at ") + offset);
  }
  auto m = parseModule(text, "planned.ir");
  ASSERT_TRUE(bool(m)) << errorText(m.takeError());
  EXPECT_EQ((*m)->arenaBytes(), 128);
  EXPECT_EQ(toString(**m), text);
}

struct BadText {
  const char *what;
  std::string from, to;
  const char *message;
};

TEST(Parser, ReportsErrorsWithLineAndColumn) {
  const BadText cases[] = {
      {"unknown op", "%3 = argmax", "%3 = argmux", "bad.ir:14:10: expected an op name, found 'argmux'"},
      {"undefined value", "argmax %2", "argmax %9", "bad.ir:14:17: expected a value defined earlier (%9 is not)"},
      {"wrong result type", "%3 = argmax %2 : tensor<i32>", "%3 = argmax %2 : tensor<q32>",
       "expected an element type"},
      {"type mismatch", "%3 = argmax %2 : tensor<i32>", "%3 = argmax %2 : tensor<2xi32>",
       "expected the result type tensor<i32> of argmax"},
      {"unknown attribute", "{layer = 0}", "{layr = 0}", "expected an attribute name, found 'layr'"},
      {"missing attribute", "kv_write %2, %1, %pos {layer = 0}", "kv_write %2, %1, %pos",
       "missing attribute 'layer'"},
      {"undeclared weight", "convert(@wg)", "convert(@nope)", "expected a weight declared earlier (@nope is not)"},
      {"bad shape", "scale_columns(@w, @g)", "scale_columns(@g, @w)", "scale_columns needs a [N][K] matrix"},
      {"kv layer", "{layer = 0}", "{layer = 2}", "layer 2 is outside the KV cache's 1 layers"},
      {"trailing junk", "  }\n}\n", "  }\n}\nextra", "expected end of input after the module, found 'extra'"},
      {"truncated", "    return %2, %3\n  }\n}\n", "    return %2", "expected"},
  };
  for (const BadText &c : cases) {
    std::string text = kSmallModule;
    size_t at = text.find(c.from);
    ASSERT_NE(at, std::string::npos) << c.what;
    text.replace(at, c.from.size(), c.to);
    auto m = parseModule(text, "bad.ir");
    ASSERT_FALSE(bool(m)) << c.what;
    std::string msg = errorText(m.takeError());
    EXPECT_NE(msg.find(c.message), std::string::npos) << c.what << ": " << msg;
  }
}

TEST(Parser, NeverCrashesOnPrefixes) {
  // Every prefix of a valid module is either valid or a clean error.
  std::string text = kSmallModule;
  for (size_t n = 0; n < text.size(); n += 7) {
    auto m = parseModule(llvm::StringRef(text).take_front(n), "prefix.ir");
    if (!m) llvm::consumeError(m.takeError());
  }
}

TEST(Printer, FloatsReadBack) {
  for (double v : {1e-5, 10000.0, 500000.0, 0.1, 1.0 / 3.0, 1e-6, 2.0})
    EXPECT_EQ(std::stod(formatDouble(v)), v) << formatDouble(v);
}

TEST(RealModels, ImportedIrRoundTrips) {
  for (const auto &model : test::kRealModels) {
    auto m = frontends::importLlama2cFile(test::modelPath(model.file));
    ASSERT_TRUE(bool(m)) << errorText(m.takeError());
    std::string text = toString(**m);
    auto parsed = parseModule(text, model.file);
    ASSERT_TRUE(bool(parsed)) << errorText(parsed.takeError());
    EXPECT_EQ(toString(**parsed), text) << model.file;
  }
}

TEST(RealModels, DecodeStepHasTheExpectedShape) {
  auto m = frontends::importLlama2cFile(test::modelPath("stories260K.bin"));
  ASSERT_TRUE(bool(m)) << errorText(m.takeError());
  const Function *f = (*m)->function("decode");
  ASSERT_NE(f, nullptr);
  // embedding, 16 ops per layer x 5, final rmsnorm, classifier
  EXPECT_EQ(f->size(), 1u + 16 * 5 + 2);
  EXPECT_EQ(f->results()[0]->type().str(), "tensor<512xf32>");
  EXPECT_EQ((*m)->function("decode_greedy")->results()[0]->type().str(), "tensor<i32>");
  EXPECT_EQ((*m)->kvCache().kvDim, 32);
}

} // namespace

namespace {

TEST(Verifier, CatchesAttentionBeforeItsKvWrite) {
  std::string text = kSmallModule;
  // An attention of layer 0 placed before the layer's kv_write.
  text.replace(text.find("    kv_write"), 0,
               "    %9 = attention %2, %pos {layer = 0, head_size = 4, n_heads = 2, n_kv_heads = 2} : tensor<8xf32>\n");
  auto m = parseModule(text, "order.ir");
  ASSERT_FALSE(bool(m));
  std::string msg = errorText(m.takeError());
  EXPECT_NE(msg.find("reads layer 0 of the KV cache before this step writes it"), std::string::npos) << msg;
}

TEST(Verifier, CatchesArenaOffsetsWithoutArena) {
  std::string text = kSmallModule;
  text.replace(text.find(" : tensor<16xf32>\n") + 17, 0, " at 0");
  auto m = parseModule(text, "offsets.ir");
  ASSERT_FALSE(bool(m));
  EXPECT_NE(errorText(m.takeError()).find("has an arena offset but the module has no arena"), std::string::npos);
}

} // namespace
