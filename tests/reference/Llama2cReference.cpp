#include "tests/reference/Llama2cReference.h"

#include "llvm/Support/ErrorHandling.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>

namespace llamac::reference {

namespace {

llvm::Error fail(llvm::StringRef path, const std::string &message) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                 path.str() + ": " + message);
}

// The three kernels of run.c, unchanged in substance.

void rmsnorm(float *o, const float *x, const float *weight, int size) {
  float ss = 0.0f;
  for (int j = 0; j < size; j++)
    ss += x[j] * x[j];
  ss /= size;
  ss += 1e-5f;
  ss = 1.0f / sqrtf(ss);
  for (int j = 0; j < size; j++)
    o[j] = weight[j] * (ss * x[j]);
}

void softmax(float *x, int size) {
  float maxVal = x[0];
  for (int i = 1; i < size; i++)
    if (x[i] > maxVal)
      maxVal = x[i];
  float sum = 0.0f;
  for (int i = 0; i < size; i++) {
    x[i] = expf(x[i] - maxVal);
    sum += x[i];
  }
  for (int i = 0; i < size; i++)
    x[i] /= sum;
}

// W (d,n) @ x (n,) -> xout (d,)
void matmul(float *xout, const float *x, const float *w, int n, int d) {
  for (int i = 0; i < d; i++) {
    const float *row = w + size_t(i) * size_t(n);
    float val = 0.0f;
    for (int j = 0; j < n; j++)
      val += row[j] * x[j];
    xout[i] = val;
  }
}

} // namespace

llvm::Expected<ReferenceModel> ReferenceModel::load(llvm::StringRef path) {
  std::ifstream in(path.str(), std::ios::binary);
  if (!in)
    return fail(path, "cannot open");
  unsigned char headerBytes[28];
  in.read(reinterpret_cast<char *>(headerBytes), sizeof(headerBytes));
  if (in.gcount() != std::streamsize(sizeof(headerBytes)))
    return fail(path, "shorter than the 28-byte llama2.c header");
  int32_t header[7];
  for (int i = 0; i < 7; i++) {
    const unsigned char *b = headerBytes + 4 * i;
    header[i] = int32_t(uint32_t(b[0]) | uint32_t(b[1]) << 8 | uint32_t(b[2]) << 16 |
                        uint32_t(b[3]) << 24);
  }

  ReferenceModel model;
  ReferenceConfig &c = model.cfg;
  c.dim = header[0];
  c.hiddenDim = header[1];
  c.nLayers = header[2];
  c.nHeads = header[3];
  c.nKvHeads = header[4];
  c.sharedClassifier = header[5] > 0;
  c.vocabSize = header[5] == INT32_MIN ? 0 : std::abs(header[5]);
  c.seqLen = header[6];

  // Limits that keep every size_t product below 2^63.
  if (c.dim <= 0 || c.dim > (1 << 20) || c.hiddenDim <= 0 || c.hiddenDim > (1 << 24) ||
      c.nLayers <= 0 || c.nLayers > 4096 || c.nHeads <= 0 || c.nKvHeads <= 0 ||
      c.vocabSize <= 0 || c.vocabSize > (1 << 24) || c.seqLen <= 0 ||
      c.seqLen > (1 << 24))
    return fail(path, "implausible llama2.c header");
  if (c.dim % c.nHeads != 0 || c.nHeads % c.nKvHeads != 0 || c.headSize() % 2 != 0)
    return fail(path, "header: dim, n_heads and n_kv_heads do not divide evenly "
                      "into an even head size");

  const size_t dim = c.dim, hidden = c.hiddenDim, layers = c.nLayers;
  const size_t kvDim = c.kvDim(), vocab = c.vocabSize, seqLen = c.seqLen;
  size_t next = 0;
  auto take = [&](size_t count) {
    size_t start = next;
    next += count;
    return start;
  };
  model.tokenEmbedding = take(vocab * dim);
  model.rmsAtt = take(layers * dim);
  model.wq = take(layers * dim * dim);
  model.wk = take(layers * kvDim * dim);
  model.wv = take(layers * kvDim * dim);
  model.wo = take(layers * dim * dim);
  model.rmsFfn = take(layers * dim);
  model.w1 = take(layers * hidden * dim);
  model.w2 = take(layers * dim * hidden);
  model.w3 = take(layers * hidden * dim);
  model.rmsFinal = take(dim);
  take(seqLen * size_t(c.headSize()) / 2); // freq_cis_real, unused
  take(seqLen * size_t(c.headSize()) / 2); // freq_cis_imag, unused
  model.classifier = c.sharedClassifier ? model.tokenEmbedding : take(vocab * dim);

  in.seekg(0, std::ios::end);
  const uint64_t fileSize = uint64_t(in.tellg());
  const uint64_t expectedSize = 28 + uint64_t(next) * sizeof(float);
  if (fileSize != expectedSize)
    return fail(path, "file is " + std::to_string(fileSize) + " bytes, header says " +
                          std::to_string(expectedSize));
  model.data.resize(next);
  in.seekg(28);
  in.read(reinterpret_cast<char *>(model.data.data()),
          std::streamsize(next * sizeof(float)));
  if (!in)
    return fail(path, "read failed");

  model.x.resize(dim);
  model.xb.resize(dim);
  model.xb2.resize(dim);
  model.hb.resize(hidden);
  model.hb2.resize(hidden);
  model.q.resize(dim);
  model.att.resize(size_t(c.nHeads) * seqLen);
  model.logits.resize(vocab);
  model.keyCache.resize(layers * seqLen * kvDim);
  model.valueCache.resize(layers * seqLen * kvDim);
  return model;
}

const std::vector<float> &ReferenceModel::forward(int token, int pos) {
  if (token < 0 || token >= cfg.vocabSize || pos < 0 || pos >= cfg.seqLen)
    llvm::report_fatal_error(llvm::Twine("ReferenceModel::forward: token ") + llvm::Twine(token) +
                             " or position " + llvm::Twine(pos) + " out of range");
  const int dim = cfg.dim, hiddenDim = cfg.hiddenDim, headSize = cfg.headSize();
  const int kvDim = cfg.kvDim();
  const int kvMul = cfg.nHeads / cfg.nKvHeads; // query heads per kv head
  const size_t seqLen = cfg.seqLen;
  const float *w = data.data();

  memcpy(x.data(), w + tokenEmbedding + size_t(token) * dim, dim * sizeof(float));

  for (size_t l = 0; l < size_t(cfg.nLayers); l++) {
    rmsnorm(xb.data(), x.data(), w + rmsAtt + l * dim, dim);

    // The kv cache rows of this position receive k and v directly.
    size_t loff = l * seqLen * kvDim;
    float *k = keyCache.data() + loff + size_t(pos) * kvDim;
    float *v = valueCache.data() + loff + size_t(pos) * kvDim;

    matmul(q.data(), xb.data(), w + wq + l * dim * dim, dim, dim);
    matmul(k, xb.data(), w + wk + l * dim * kvDim, dim, kvDim);
    matmul(v, xb.data(), w + wv + l * dim * kvDim, dim, kvDim);

    // RoPE: rotate each pair (i, i+1) of every head of q and k.
    for (int i = 0; i < dim; i += 2) {
      int headDim = i % headSize;
      float freq = 1.0f / powf(10000.0f, headDim / (float)headSize);
      float val = pos * freq;
      float fcr = cosf(val);
      float fci = sinf(val);
      int rotn = i < kvDim ? 2 : 1; // 2: q and k, 1: q only
      for (int vi = 0; vi < rotn; vi++) {
        float *vec = vi == 0 ? q.data() : k;
        float v0 = vec[i];
        float v1 = vec[i + 1];
        vec[i] = v0 * fcr - v1 * fci;
        vec[i + 1] = v0 * fci + v1 * fcr;
      }
    }

    // Multihead attention over positions 0..pos.
    for (int h = 0; h < cfg.nHeads; h++) {
      const float *qh = q.data() + size_t(h) * headSize;
      float *atth = att.data() + size_t(h) * seqLen;
      for (int t = 0; t <= pos; t++) {
        const float *kt = keyCache.data() + loff + size_t(t) * kvDim +
                          size_t(h / kvMul) * headSize;
        float score = 0.0f;
        for (int i = 0; i < headSize; i++)
          score += qh[i] * kt[i];
        score /= sqrtf(headSize);
        atth[t] = score;
      }
      softmax(atth, pos + 1);
      float *xbh = xb.data() + size_t(h) * headSize;
      memset(xbh, 0, headSize * sizeof(float));
      for (int t = 0; t <= pos; t++) {
        const float *vt = valueCache.data() + loff + size_t(t) * kvDim +
                          size_t(h / kvMul) * headSize;
        float a = atth[t];
        for (int i = 0; i < headSize; i++)
          xbh[i] += a * vt[i];
      }
    }

    matmul(xb2.data(), xb.data(), w + wo + l * dim * dim, dim, dim);
    for (int i = 0; i < dim; i++)
      x[i] += xb2[i];

    // Feed-forward: w2(silu(w1(x)) * w3(x)).
    rmsnorm(xb.data(), x.data(), w + rmsFfn + l * dim, dim);
    matmul(hb.data(), xb.data(), w + w1 + l * dim * hiddenDim, dim, hiddenDim);
    matmul(hb2.data(), xb.data(), w + w3 + l * dim * hiddenDim, dim, hiddenDim);
    for (int i = 0; i < hiddenDim; i++) {
      float val = hb[i];
      val *= (1.0f / (1.0f + expf(-val)));
      val *= hb2[i];
      hb[i] = val;
    }
    matmul(xb.data(), hb.data(), w + w2 + l * dim * hiddenDim, hiddenDim, dim);
    for (int i = 0; i < dim; i++)
      x[i] += xb[i];
  }

  rmsnorm(x.data(), x.data(), w + rmsFinal, dim);
  matmul(logits.data(), x.data(), w + classifier, dim, cfg.vocabSize);
  return logits;
}

int argmaxToken(const std::vector<float> &logits) {
  int best = 0;
  for (int i = 1; i < int(logits.size()); i++)
    if (logits[i] > logits[best])
      best = i;
  return best;
}

std::vector<int> greedyGenerate(ReferenceModel &model, std::vector<int> prompt,
                                int steps) {
  if (prompt.empty())
    llvm::report_fatal_error("greedyGenerate: empty prompt");
  if (steps <= 0 || steps > model.seqLen())
    steps = model.seqLen();
  std::vector<int> printed;
  int token = prompt[0];
  for (int pos = 0; pos < steps; pos++) {
    const std::vector<float> &logits = model.forward(token, pos);
    int next = pos + 1 < int(prompt.size()) ? prompt[pos + 1] : argmaxToken(logits);
    if (next == 1) // BOS delimits sequences
      break;
    printed.push_back(next);
    token = next;
  }
  return printed;
}

} // namespace llamac::reference
