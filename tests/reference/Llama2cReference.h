//===- tests/reference/Llama2cReference.h - Independent forward pass -*- C++ -*-===//
//
// A forward pass written directly from the llama2.c file format, the way
// llama2.c's run.c does it: float32 math, one loop per operation, every buffer
// allocated once. It shares no code with llamac (not even the header reader),
// so tests can hold the compiler, the CPU executor and the CUDA kernels
// against something that cannot share their bugs.
//
// Conventions (the same as run.c): RMSNorm eps 1e-5; RoPE theta 10000 over
// pairs (2i, 2i+1) within each head; attention scale 1/sqrt(head_size); query
// head h reads kv head h / (n_heads / n_kv_heads); SwiGLU feed-forward.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <vector>

namespace llamac::reference {

struct ReferenceConfig {
  int dim = 0;
  int hiddenDim = 0;
  int nLayers = 0;
  int nHeads = 0;
  int nKvHeads = 0;
  int vocabSize = 0; // always positive
  int seqLen = 0;
  bool sharedClassifier = true;

  int headSize() const { return dim / nHeads; }
  int kvDim() const { return dim * nKvHeads / nHeads; }
};

class ReferenceModel {
public:
  /// Reads the whole checkpoint into memory. Errors name the file and say
  /// what was expected and found.
  static llvm::Expected<ReferenceModel> load(llvm::StringRef path);

  ReferenceModel(ReferenceModel &&) = default;
  ReferenceModel &operator=(ReferenceModel &&) = default;
  ReferenceModel(const ReferenceModel &) = delete;
  ReferenceModel &operator=(const ReferenceModel &) = delete;

  /// Runs one token at position `pos` (positions 0..pos-1 must have run
  /// before, in order, as in run.c) and returns the logits, [vocab]. The
  /// reference stays valid until the next call.
  const std::vector<float> &forward(int token, int pos);

  const ReferenceConfig &config() const { return cfg; }
  int vocabSize() const { return cfg.vocabSize; }
  int seqLen() const { return cfg.seqLen; }

private:
  ReferenceModel() = default;

  ReferenceConfig cfg;
  std::vector<float> data; // every float after the header

  // Offsets into `data` (offsets, not pointers, so moving the model is safe).
  size_t tokenEmbedding = 0; // (vocab, dim)
  size_t rmsAtt = 0;         // (layer, dim)
  size_t wq = 0;             // (layer, dim, n_heads * head_size)
  size_t wk = 0;             // (layer, dim, n_kv_heads * head_size)
  size_t wv = 0;             // (layer, dim, n_kv_heads * head_size)
  size_t wo = 0;             // (layer, n_heads * head_size, dim)
  size_t rmsFfn = 0;         // (layer, dim)
  size_t w1 = 0;             // (layer, hidden_dim, dim)
  size_t w2 = 0;             // (layer, dim, hidden_dim)
  size_t w3 = 0;             // (layer, hidden_dim, dim)
  size_t rmsFinal = 0;       // (dim)
  size_t classifier = 0;     // (vocab, dim)

  // Run state, allocated once by load().
  std::vector<float> x;      // activation at current time stamp (dim)
  std::vector<float> xb;     // same, inside a residual branch (dim)
  std::vector<float> xb2;    // an additional buffer (dim)
  std::vector<float> hb;     // buffer for the hidden dimension in the ffn (hidden_dim)
  std::vector<float> hb2;    // buffer for the hidden dimension in the ffn (hidden_dim)
  std::vector<float> q;      // query (dim)
  std::vector<float> att;    // attention scores (n_heads, seq_len)
  std::vector<float> logits; // output logits (vocab)
  std::vector<float> keyCache;   // (layer, seq_len, kv_dim)
  std::vector<float> valueCache; // (layer, seq_len, kv_dim)
};

/// Index of the largest logit; the lowest index wins a tie.
int argmaxToken(const std::vector<float> &logits);

/// Greedy decoding with run.c's loop: positions 0, 1, ... are fed prompt[0],
/// prompt[1], ... and, once the prompt is used up, the argmax of the previous
/// logits. `steps` counts positions (clamped to seq_len; <= 0 means seq_len).
/// Returns what run.c prints: one token per position run, i.e. prompt[1..]
/// followed by the generated tokens, stopping before a BOS (token 1).
/// `prompt` must not be empty.
std::vector<int> greedyGenerate(ReferenceModel &model, std::vector<int> prompt,
                                int steps);

} // namespace llamac::reference
