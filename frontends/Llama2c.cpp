#include "frontends/Llama2c.h"

#include "ir/Builder.h"
#include "ir/Verifier.h"

#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/Path.h"

#include <cctype>

namespace llamac::frontends {

using namespace ir;

namespace {

/// The weights of one layer, as module constants.
struct LayerWeights {
  Weight *rmsAtt, *wq, *wk, *wv, *wo, *rmsFfn, *w1, *w2, *w3;
};

struct ModelWeights {
  Weight *tokenEmbedding;
  std::vector<LayerWeights> layers;
  Weight *rmsFinal;
  Weight *classifier;
};

ModelWeights declareWeights(Module &m, const Llama2cFile &file) {
  const Llama2cConfig &c = file.config;
  const Llama2cLayout &l = file.layout;
  auto matrix = [&](std::string name, int64_t rows, int64_t cols, uint64_t offset) {
    return m.addWeight(std::make_unique<Weight>(std::move(name), TensorType(DType::f32, {rows, cols}), offset));
  };
  auto vector = [&](std::string name, int64_t n, uint64_t offset) {
    return m.addWeight(std::make_unique<Weight>(std::move(name), TensorType(DType::f32, {n}), offset));
  };
  int64_t dim = c.dim, kvDim = c.kvDim(), hidden = c.hiddenDim;
  ModelWeights w;
  w.tokenEmbedding = matrix("tok_embeddings", c.vocabSize, dim, l.tokenEmbedding);
  for (int64_t i = 0; i < c.nLayers; ++i) {
    std::string p = "l" + std::to_string(i) + ".";
    auto at = [&](uint64_t tensor, int64_t perLayer) { return Llama2cLayout::layerOffset(tensor, i, perLayer); };
    LayerWeights lw;
    lw.rmsAtt = vector(p + "rms_att", dim, at(l.rmsAtt, dim));
    lw.wq = matrix(p + "wq", dim, dim, at(l.wq, dim * dim));
    lw.wk = matrix(p + "wk", kvDim, dim, at(l.wk, kvDim * dim));
    lw.wv = matrix(p + "wv", kvDim, dim, at(l.wv, kvDim * dim));
    lw.wo = matrix(p + "wo", dim, dim, at(l.wo, dim * dim));
    lw.rmsFfn = vector(p + "rms_ffn", dim, at(l.rmsFfn, dim));
    lw.w1 = matrix(p + "w1", hidden, dim, at(l.w1, hidden * dim));
    lw.w2 = matrix(p + "w2", dim, hidden, at(l.w2, dim * hidden));
    lw.w3 = matrix(p + "w3", hidden, dim, at(l.w3, hidden * dim));
    w.layers.push_back(lw);
  }
  w.rmsFinal = vector("rms_final", dim, l.rmsFinal);
  w.classifier = c.sharedClassifier ? w.tokenEmbedding : matrix("wcls", c.vocabSize, dim, l.classifier);
  return w;
}

/// Appends one decode step to `f` and returns the logits.
llvm::Expected<Value *> buildStep(Function &f, const ModelWeights &w, const Llama2cConfig &c,
                                  const ImportOptions &options) {
  Builder b(f);
  Value *token = f.argument("token"), *pos = f.argument("pos");
  int64_t headSize = c.headSize();
  // Each builder call validates shapes; a failure here is a frontend bug, but
  // it is reported rather than asserted so that it names the op.
#define TRY(var, expr)                                                                                                 \
  auto var##OrErr = (expr);                                                                                            \
  if (!var##OrErr) return var##OrErr.takeError();                                                                     \
  Value *var = *var##OrErr
  TRY(x, b.embedding(w.tokenEmbedding, token));
  for (int64_t i = 0; i < c.nLayers; ++i) {
    const LayerWeights &lw = w.layers[i];
    TRY(xb, b.rmsNorm(x, lw.rmsAtt, options.rmsEps));
    TRY(q, b.matmul(xb, lw.wq));
    TRY(k, b.matmul(xb, lw.wk));
    TRY(v, b.matmul(xb, lw.wv));
    TRY(qr, b.rope(q, pos, headSize, options.ropeTheta));
    TRY(kr, b.rope(k, pos, headSize, options.ropeTheta));
    if (auto op = b.kvWrite(kr, v, pos, i); !op) return op.takeError();
    TRY(att, b.attention(qr, pos, i, c.nHeads, c.nKvHeads, headSize));
    TRY(attOut, b.matmul(att, lw.wo));
    TRY(x1, b.add(x, attOut));
    TRY(xb2, b.rmsNorm(x1, lw.rmsFfn, options.rmsEps));
    TRY(gate, b.matmul(xb2, lw.w1));
    TRY(up, b.matmul(xb2, lw.w3));
    TRY(h, b.siluMul(gate, up));
    TRY(ffnOut, b.matmul(h, lw.w2));
    TRY(x2, b.add(x1, ffnOut));
    x = x2;
  }
  TRY(xf, b.rmsNorm(x, w.rmsFinal, options.rmsEps));
  TRY(logits, b.matmul(xf, w.classifier));
#undef TRY
  return logits;
}

/// "stories260K" from "/models/stories260K.bin", with characters the IR's
/// names do not allow replaced by '_'.
std::string moduleName(llvm::StringRef path) {
  std::string name = llvm::sys::path::stem(path).str();
  for (char &ch : name)
    if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '_' && ch != '.') ch = '_';
  return name.empty() ? "model" : name;
}

} // namespace

llvm::Expected<std::unique_ptr<Module>> importLlama2c(const Llama2cFile &file, const ImportOptions &options) {
  const Llama2cConfig &c = file.config;
  if (options.maxSeqLen < 0)
    return llvm::createStringError(llvm::inconvertibleErrorCode(), "--max-seq-len must be positive, got %lld",
                                   (long long)options.maxSeqLen);
  auto m = std::make_unique<Module>(moduleName(file.path));
  KvCacheSpec &kv = m->kvCache();
  kv.layers = c.nLayers;
  kv.seqLen = options.maxSeqLen > 0 ? options.maxSeqLen : c.seqLen;
  kv.kvDim = c.kvDim();
  if (!isFloat(options.kvDtype))
    return llvm::createStringError(llvm::inconvertibleErrorCode(), "the KV cache dtype must be f32, f16 or bf16, got " +
                                                                       toString(options.kvDtype));
  kv.dtype = options.kvDtype;

  ModelWeights weights = declareWeights(*m, file);
  for (const char *name : {"decode", "decode_greedy"}) {
    Function &f = *m->addFunction(name);
    f.addArgument("token", TensorType::scalar(DType::i32));
    f.addArgument("pos", TensorType::scalar(DType::i32));
    auto logits = buildStep(f, weights, c, options);
    if (!logits) return logits.takeError();
    if (f.name() == "decode") {
      f.setResults({*logits});
    } else {
      auto next = Builder(f).argmax(*logits);
      if (!next) return next.takeError();
      f.setResults({*next});
    }
  }
  if (auto e = verify(*m)) return e;
  return m;
}

llvm::Expected<std::unique_ptr<Module>> importLlama2cFile(llvm::StringRef path, const ImportOptions &options) {
  auto file = readLlama2cFile(path);
  if (!file) return file.takeError();
  return importLlama2c(*file, options);
}

} // namespace llamac::frontends
