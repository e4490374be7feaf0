#include "runtime/cpu/CpuExecutor.h"

#include "runtime/Half.h"

#include "llvm/Support/FormatVariadic.h"

#include <cmath>

namespace llamac::runtime {

using namespace ir;

namespace {

llvm::Error error(const llvm::Twine &msg) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), msg);
}

/// sum_k row[k] * x[k], accumulated in order in f32 like run.c's matmul.
float dot(const char *row, DType dtype, const float *x, int64_t k) {
  float sum = 0.0f;
  switch (dtype) {
  case DType::f32: {
    const float *w = reinterpret_cast<const float *>(row);
    for (int64_t i = 0; i < k; ++i) sum += w[i] * x[i];
    return sum;
  }
  case DType::f16:
    for (int64_t i = 0; i < k; ++i) {
      uint16_t h;
      std::memcpy(&h, row + 2 * i, 2);
      sum += halfToFloat(h) * x[i];
    }
    return sum;
  case DType::bf16:
    for (int64_t i = 0; i < k; ++i) {
      uint16_t h;
      std::memcpy(&h, row + 2 * i, 2);
      sum += bf16ToFloat(h) * x[i];
    }
    return sum;
  default:
    for (int64_t i = 0; i < k; ++i) sum += loadElement(row, dtype, i) * x[i];
    return sum;
  }
}

float silu(float v) { return v * (1.0f / (1.0f + expf(-v))); }

/// 1 / sqrt(mean(x^2) + eps), in run.c's order.
float rmsScale(const float *x, int64_t n, double eps) {
  float ss = 0.0f;
  for (int64_t j = 0; j < n; ++j) ss += x[j] * x[j];
  ss /= n;
  ss += float(eps);
  return 1.0f / sqrtf(ss);
}

int argmaxOf(const float *v, int64_t n) {
  int best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (v[i] > v[best]) best = int(i);
  return best;
}

constexpr size_t kRowsPerChunk = 16;

} // namespace

uint64_t argmaxKey(float value, uint32_t index) {
  uint32_t ordered = 0; // NaN
  if (value == value) {
    uint32_t bits;
    float v = value == 0.0f ? 0.0f : value;
    std::memcpy(&bits, &v, 4);
    ordered = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
  }
  return (uint64_t(ordered) << 32) | (0xffffffffu - index);
}

CpuExecutor::CpuExecutor(const Module &m, const WeightStore &weights, unsigned threads, unsigned rank)
    : module_(m), weights_(weights), pool_(threads), kvSpec_(m.kvCache()), rank_(rank) {}

llvm::Expected<std::unique_ptr<CpuExecutor>> CpuExecutor::create(const Module &m, const WeightStore &weights,
                                                                 unsigned threads, unsigned rank) {
  auto exec = std::unique_ptr<CpuExecutor>(new CpuExecutor(m, weights, threads, rank));
  if (auto e = exec->layOut()) return e;
  return exec;
}

llvm::Error CpuExecutor::layOut() {
  // Buffers of the unplanned module are packed; 16 floats keep them 64-byte aligned.
  auto align = [](size_t floats) { return (floats + 15) / 16 * 16; };
  bool planned = module_.arenaBytes() >= 0;
  size_t arenaFloats = planned ? align((module_.arenaBytes() + 3) / 4) : 0;
  int64_t maxWidth = 0;
  int64_t maxHeads = 1;
  for (const auto &f : module_.functions()) {
    auto args = f->arguments();
    if (args.size() != 2 || !(args[0]->type() == TensorType::scalar(DType::i32)) ||
        !(args[1]->type() == TensorType::scalar(DType::i32)))
      return error("@" + f->name() + ": a decode step takes (%token : tensor<i32>, %pos : tensor<i32>)");
    for (const auto &op : f->ops()) {
      if (const Value *r = op->result()) {
        size_t floats = std::max<int64_t>(1, r->type().numElements());
        maxWidth = std::max<int64_t>(maxWidth, floats);
        if (planned) {
          if (r->arenaOffset() < 0 || r->arenaOffset() % 4 != 0)
            return error("@" + f->name() + ": a planned value has no 4-byte aligned arena offset");
          if (uint64_t(r->arenaOffset()) + r->type().byteSize() > uint64_t(module_.arenaBytes()))
            return error("@" + f->name() + ": a planned value lies outside the arena");
          offsets_[r] = r->arenaOffset() / 4;
        } else {
          offsets_[r] = arenaFloats;
          arenaFloats += align(floats);
        }
      }
      // Fused matmuls keep whole rows of results (gate values, logits, K and
      // V) in scratch: size it for every operand vector and every matrix.
      for (const Value *v : op->operands())
        if (v->type().rank() >= 1) maxWidth = std::max(maxWidth, v->type().shape[0]);
      if (op->kind() == OpKind::Attention) maxHeads = std::max(maxHeads, op->intAttr(AttrKey::n_heads));
      if (op->kind() == OpKind::MatMulQkvRopeKv)
        maxWidth = std::max(maxWidth, op->operand(1)->type().shape[0] + 2 * op->operand(2)->type().shape[0]);
    }
  }
  arena_.assign(arenaFloats, 0.0f);
  layerStride_ = kvSpec_.seqLen * kvSpec_.kvDim;
  kvCache_.assign(2 * kvSpec_.layers * layerStride_, 0.0f);
  normalized_.assign(maxWidth, 0.0f);
  rowScratch_.assign(maxWidth, 0.0f);
  scores_.assign(maxHeads * kvSpec_.seqLen, 0.0f);
  return llvm::Error::success();
}

const float *CpuExecutor::data(const Value *v) const {
  auto it = offsets_.find(v);
  assert(it != offsets_.end() && "value has no buffer");
  return arena_.data() + it->second;
}

float *CpuExecutor::mutableData(const Value *v) { return const_cast<float *>(data(v)); }

void CpuExecutor::clearKvCache() { std::fill(kvCache_.begin(), kvCache_.end(), 0.0f); }

llvm::ArrayRef<float> CpuExecutor::outputVector(const Function &f) const {
  const Value *r = f.results()[0];
  return llvm::ArrayRef<float>(data(r), r->type().numElements());
}

int CpuExecutor::outputToken(const Function &f) const {
  int token;
  std::memcpy(&token, data(f.results()[0]), 4);
  return token;
}

llvm::Error CpuExecutor::beginStep(int token, int pos) {
  if (pos < 0 || pos >= kvSpec_.seqLen)
    return error(llvm::formatv("position {0} is outside the KV cache's {1} positions", pos, kvSpec_.seqLen));
  token_ = token;
  pos_ = pos;
  return llvm::Error::success();
}

llvm::Error CpuExecutor::step(const Function &f, int token, int pos) {
  if (module_.tensorParallel() > 1)
    return error(llvm::formatv("the module is partitioned for {0} ranks: run it with TensorParallelCpuExecutor",
                               module_.tensorParallel()));
  if (auto e = beginStep(token, pos)) return e;
  for (const auto &op : f.ops())
    if (auto e = run(*op)) return e;
  return llvm::Error::success();
}

llvm::Error CpuExecutor::run(const Op &op) {
  if (op.kind() == OpKind::Embedding) {
    int64_t vocab = op.operand(0)->type().shape[0];
    if (token_ < 0 || token_ >= vocab)
      return error(llvm::formatv("token {0} is outside the vocabulary of {1}", token_, vocab));
  }
  switch (op.kind()) {
#define OP(Kind, Mnemonic, NumOperands, NumResults, Effects, ...)                                                      \
  case OpKind::Kind: run##Kind(op); break;
#include "ir/Ops.def"
  }
  return llvm::Error::success();
}

//===----------------------------------------------------------------------===//
// Shared pieces
//===----------------------------------------------------------------------===//

const float *CpuExecutor::input(const Op &op) {
  const Value *x = op.operand(0);
  if (!op.hasAttr(AttrKey::rms_eps)) return data(x);
  int64_t n = x->type().shape[0];
  const float *src = data(x);
  float scale = rmsScale(src, n, op.floatAttr(AttrKey::rms_eps));
  for (int64_t j = 0; j < n; ++j) normalized_[j] = scale * src[j];
  return normalized_.data();
}

template <typename Row> void CpuExecutor::forEachRow(const Value *w, const float *x, Row &&row) {
  int64_t rows = w->type().shape[0], cols = w->type().shape[1];
  DType dtype = w->type().dtype;
  const char *base = weight(w);
  size_t rowBytes = size_t(cols) * byteSize(dtype);
  pool_.parallelFor(
      rows,
      [&](size_t begin, size_t end) {
        for (size_t n = begin; n < end; ++n) row(n, dot(base + n * rowBytes, dtype, x, cols));
      },
      kRowsPerChunk);
}

void CpuExecutor::rope(float *vec, int64_t n, int64_t headSize, double theta, int pos) {
  for (int64_t i = 0; i < n; i += 2) {
    int64_t headDim = i % headSize;
    float freq = 1.0f / powf(float(theta), headDim / float(headSize));
    float val = pos * freq;
    float fcr = cosf(val), fci = sinf(val);
    float v0 = vec[i], v1 = vec[i + 1];
    vec[i] = v0 * fcr - v1 * fci;
    vec[i + 1] = v0 * fci + v1 * fcr;
  }
}

void CpuExecutor::writeKv(int64_t layer, int pos, const float *k, const float *v) {
  // The cache holds floats here; a 16-bit cache dtype rounds each value as
  // the GPU's store does (round to nearest even), so both read the same.
  auto store = [&](const float *from, float *to) {
    for (int64_t i = 0; i < kvSpec_.kvDim; ++i) {
      switch (kvSpec_.dtype) {
      case ir::DType::f16: to[i] = halfToFloat(floatToHalf(from[i])); break;
      case ir::DType::bf16: to[i] = bf16ToFloat(floatToBf16(from[i])); break;
      default: to[i] = from[i];
      }
    }
  };
  store(k, kCache(layer) + pos * kvSpec_.kvDim);
  store(v, vCache(layer) + pos * kvSpec_.kvDim);
}

//===----------------------------------------------------------------------===//
// One function per op of the table
//===----------------------------------------------------------------------===//

void CpuExecutor::runEmbedding(const Op &op) {
  const Value *table = op.operand(0);
  int64_t dim = table->type().shape[1];
  DType dtype = table->type().dtype;
  const char *row = weight(table) + size_t(token_) * dim * byteSize(dtype);
  float *y = buf(op.result());
  for (int64_t i = 0; i < dim; ++i) y[i] = loadElement(row, dtype, i);
}

void CpuExecutor::runRmsNorm(const Op &op) {
  const Value *x = op.operand(0), *g = op.operand(1);
  int64_t n = x->type().shape[0];
  const float *src = data(x);
  float scale = rmsScale(src, n, op.floatAttr(AttrKey::eps));
  const char *gain = weight(g);
  float *y = buf(op.result());
  for (int64_t j = 0; j < n; ++j) y[j] = loadElement(gain, g->type().dtype, j) * (scale * src[j]);
}

void CpuExecutor::runRmsNormalize(const Op &op) {
  int64_t n = op.operand(0)->type().shape[0];
  const float *src = data(op.operand(0));
  float scale = rmsScale(src, n, op.floatAttr(AttrKey::eps));
  float *y = buf(op.result());
  for (int64_t j = 0; j < n; ++j) y[j] = scale * src[j];
}

void CpuExecutor::runMatMul(const Op &op) {
  float *y = buf(op.result());
  forEachRow(op.operand(1), input(op), [&](size_t n, float v) { y[n] = v; });
}

void CpuExecutor::runMatMulAdd(const Op &op) {
  // y may share its buffer with r (an in-place residual update): each row
  // reads r[n] before writing y[n].
  const float *r = data(op.operand(2));
  float *y = buf(op.result());
  forEachRow(op.operand(1), input(op), [&](size_t n, float v) { y[n] = r[n] + v; });
}

void CpuExecutor::runMatMulSwiglu(const Op &op) {
  const float *x = input(op);
  float *gate = rowScratch_.data();
  forEachRow(op.operand(1), x, [&](size_t n, float v) { gate[n] = v; });
  float *y = buf(op.result());
  forEachRow(op.operand(2), x, [&](size_t n, float v) { y[n] = silu(gate[n]) * v; });
}

void CpuExecutor::runMatMulQkv(const Op &op) {
  const float *x = input(op);
  float *y = buf(op.result());
  for (unsigned i = 1; i <= 3; ++i) {
    forEachRow(op.operand(i), x, [&](size_t n, float v) { y[n] = v; });
    y += op.operand(i)->type().shape[0];
  }
}

void CpuExecutor::runMatMulQkvRopeKv(const Op &op) {
  const float *x = input(op);
  int64_t nq = op.operand(1)->type().shape[0], nkv = op.operand(2)->type().shape[0];
  float *q = buf(op.result());
  float *k = rowScratch_.data(), *v = k + nkv;
  forEachRow(op.operand(1), x, [&](size_t n, float val) { q[n] = val; });
  forEachRow(op.operand(2), x, [&](size_t n, float val) { k[n] = val; });
  forEachRow(op.operand(3), x, [&](size_t n, float val) { v[n] = val; });
  int64_t headSize = op.intAttr(AttrKey::head_size);
  double theta = op.floatAttr(AttrKey::theta);
  rope(q, nq, headSize, theta, pos_);
  rope(k, nkv, headSize, theta, pos_);
  writeKv(op.intAttr(AttrKey::layer), pos_, k, v);
}

void CpuExecutor::runMatMulArgMax(const Op &op) {
  float *logits = rowScratch_.data();
  forEachRow(op.operand(1), input(op), [&](size_t n, float v) { logits[n] = v; });
  int token = argmaxOf(logits, op.operand(1)->type().shape[0]);
  std::memcpy(buf(op.result()), &token, 4);
}

void CpuExecutor::runMatMulArgMaxShard(const Op &op) {
  float *logits = rowScratch_.data();
  int64_t rows = op.operand(1)->type().shape[0];
  forEachRow(op.operand(1), input(op), [&](size_t n, float v) { logits[n] = v; });
  int best = argmaxOf(logits, rows);
  uint64_t key = argmaxKey(logits[best], uint32_t(rank_ * rows + best));
  std::memcpy(buf(op.result()), &key, 8);
}

// The collectives of a single rank; TensorParallelCpuExecutor carries them
// out across ranks instead.
void CpuExecutor::runAllReduce(const Op &op) {
  int64_t n = op.operand(0)->type().shape[0];
  const float *x = data(op.operand(0));
  std::copy(x, x + n, buf(op.result()));
}

void CpuExecutor::runAllGather(const Op &op) { runAllReduce(op); }

void CpuExecutor::runArgMaxReduce(const Op &op) {
  uint64_t key;
  std::memcpy(&key, data(op.operand(0)), 8);
  int token = argmaxKeyIndex(key);
  std::memcpy(buf(op.result()), &token, 4);
}

void CpuExecutor::runRope(const Op &op) {
  int64_t n = op.operand(0)->type().shape[0];
  const float *x = data(op.operand(0));
  float *y = buf(op.result());
  std::copy(x, x + n, y);
  rope(y, n, op.intAttr(AttrKey::head_size), op.floatAttr(AttrKey::theta), pos_);
}

void CpuExecutor::runKvWrite(const Op &op) {
  writeKv(op.intAttr(AttrKey::layer), pos_, data(op.operand(0)), data(op.operand(1)));
}

void CpuExecutor::runAttention(const Op &op) {
  int64_t layer = op.intAttr(AttrKey::layer), heads = op.intAttr(AttrKey::n_heads),
          kvHeads = op.intAttr(AttrKey::n_kv_heads), headSize = op.intAttr(AttrKey::head_size);
  int64_t kvMul = heads / kvHeads, kvDim = kvSpec_.kvDim, seqLen = kvSpec_.seqLen;
  const float *q = data(op.operand(0));
  const float *keys = kCache(layer), *values = vCache(layer);
  float *out = buf(op.result());
  int pos = pos_;
  pool_.parallelFor(heads, [&](size_t begin, size_t end) {
    for (size_t h = begin; h < end; ++h) {
      const float *qh = q + h * headSize;
      float *att = scores_.data() + h * seqLen;
      int64_t kvOffset = (h / kvMul) * headSize;
      for (int t = 0; t <= pos; ++t) {
        const float *k = keys + t * kvDim + kvOffset;
        float score = 0.0f;
        for (int64_t i = 0; i < headSize; ++i) score += qh[i] * k[i];
        att[t] = score / sqrtf(float(headSize));
      }
      // softmax over 0..pos
      float maxVal = att[0];
      for (int t = 1; t <= pos; ++t) maxVal = std::max(maxVal, att[t]);
      float sum = 0.0f;
      for (int t = 0; t <= pos; ++t) {
        att[t] = expf(att[t] - maxVal);
        sum += att[t];
      }
      for (int t = 0; t <= pos; ++t) att[t] /= sum;
      float *oh = out + h * headSize;
      std::fill(oh, oh + headSize, 0.0f);
      for (int t = 0; t <= pos; ++t) {
        const float *v = values + t * kvDim + kvOffset;
        float a = att[t];
        for (int64_t i = 0; i < headSize; ++i) oh[i] += a * v[i];
      }
    }
  });
}

void CpuExecutor::runSiluMul(const Op &op) {
  int64_t n = op.operand(0)->type().shape[0];
  const float *a = data(op.operand(0)), *b = data(op.operand(1));
  float *y = buf(op.result());
  for (int64_t i = 0; i < n; ++i) y[i] = silu(a[i]) * b[i];
}

void CpuExecutor::runAdd(const Op &op) {
  int64_t n = op.operand(0)->type().shape[0];
  const float *a = data(op.operand(0)), *b = data(op.operand(1));
  float *y = buf(op.result());
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
}

void CpuExecutor::runArgMax(const Op &op) {
  int token = argmaxOf(data(op.operand(0)), op.operand(0)->type().shape[0]);
  std::memcpy(buf(op.result()), &token, 4);
}

void CpuExecutor::runSlice(const Op &op) {
  const float *x = data(op.operand(0)) + op.intAttr(AttrKey::offset);
  std::copy(x, x + op.intAttr(AttrKey::size), buf(op.result()));
}

} // namespace llamac::runtime
