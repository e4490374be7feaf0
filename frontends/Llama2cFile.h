//===- frontends/Llama2cFile.h - The llama2.c checkpoint file ---*- C++ -*-===//
//
// The legacy (version 0) llama2.c checkpoint: a header of 7 little-endian int32
//
//   dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
//
// followed by float32 tensors, in this order (L = n_layers):
//
//   token_embedding [vocab][dim]
//   rms_att [L][dim]   wq [L][dim][dim]   wk [L][kv_dim][dim]   wv [L][kv_dim][dim]
//   wo [L][dim][dim]   rms_ffn [L][dim]   w1 [L][hidden][dim]   w2 [L][dim][hidden]
//   w3 [L][hidden][dim]
//   rms_final [dim]
//   freq_cis_real [seq_len][head_size/2]   freq_cis_imag [seq_len][head_size/2]
//   wcls [vocab][dim]                      (only when vocab_size < 0)
//
// A negative vocab_size means the classifier is stored after everything else;
// otherwise it shares the token embedding. The two RoPE tables are a leftover of
// old exports: readers skip them and compute RoPE (theta 10000) themselves.
//
// This file only reads and checks the header and works out where each tensor
// lives; it never reads the weights. Building the IR is another file's job.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <cstdint>
#include <string>

namespace llvm {
class raw_ostream;
}

namespace llamac::frontends {

/// The header, decoded. vocabSize is always positive; the sign that the file
/// uses for "unshared classifier" is sharedClassifier.
struct Llama2cConfig {
  int64_t dim = 0;
  int64_t hiddenDim = 0;
  int64_t nLayers = 0;
  int64_t nHeads = 0;
  int64_t nKvHeads = 0;
  int64_t vocabSize = 0;
  int64_t seqLen = 0;
  bool sharedClassifier = true;

  int64_t headSize() const { return dim / nHeads; }
  int64_t kvDim() const { return dim * nKvHeads / nHeads; }
};

/// Where each tensor starts, in bytes from the start of the file. The stacked
/// per-layer tensors point at layer 0; see layerOffset.
struct Llama2cLayout {
  static constexpr uint64_t kHeaderBytes = 28;

  uint64_t tokenEmbedding = 0; // [vocab][dim]
  uint64_t rmsAtt = 0;         // [layer][dim]
  uint64_t wq = 0;             // [layer][dim][dim]
  uint64_t wk = 0;             // [layer][kv_dim][dim]
  uint64_t wv = 0;             // [layer][kv_dim][dim]
  uint64_t wo = 0;             // [layer][dim][dim]
  uint64_t rmsFfn = 0;         // [layer][dim]
  uint64_t w1 = 0;             // [layer][hidden][dim]
  uint64_t w2 = 0;             // [layer][dim][hidden]
  uint64_t w3 = 0;             // [layer][hidden][dim]
  uint64_t rmsFinal = 0;       // [dim]
  uint64_t ropeTables = 0;     // 2 x [seq_len][head_size/2], legacy, unused
  uint64_t classifier = 0;     // [vocab][dim]; == tokenEmbedding when shared
  uint64_t fileSize = 0;

  /// Byte offset of layer `layer`'s slice of a stacked tensor that starts at
  /// `tensorOffset` and has `elementsPerLayer` floats per layer, e.g.
  /// `layerOffset(layout.wq, l, dim * dim)`. Only valid for offsets of a
  /// layout that computeLlama2cLayout accepted, so it cannot overflow.
  static uint64_t layerOffset(uint64_t tensorOffset, int64_t layer,
                              int64_t elementsPerLayer) {
    return tensorOffset + uint64_t(layer) * uint64_t(elementsPerLayer) * 4;
  }
};

struct Llama2cFile {
  std::string path;
  Llama2cConfig config;
  Llama2cLayout layout;
};

/// Checks what the format itself requires: positive sizes, n_heads divides
/// dim, n_kv_heads divides n_heads, an even head size (RoPE rotates pairs) and
/// sizes that fit the header's int32 fields. `nameForErrors` starts each message.
llvm::Error validateLlama2cConfig(const Llama2cConfig &config,
                                  llvm::StringRef nameForErrors);

/// Validates `config` and lays the tensors out. Every byte count is computed
/// with overflow checks, so a nonsense config is an error, never a wrap-around.
llvm::Expected<Llama2cLayout>
computeLlama2cLayout(const Llama2cConfig &config, llvm::StringRef nameForErrors);

/// Opens `path`, decodes and validates the header, recognizes other formats
/// (llama2.c version 1/2 exports, GGUF, text) and checks that the file has
/// exactly the size the header implies. Reads 28 bytes, never the weights.
llvm::Expected<Llama2cFile> readLlama2cFile(llvm::StringRef path);

/// Writes the 28-byte header (vocab_size negative when the classifier is not
/// shared). Fails if the config does not validate.
llvm::Error writeLlama2cHeader(llvm::raw_ostream &os, const Llama2cConfig &config);

/// "dim=64, hidden_dim=172, n_layers=5, n_heads=8, n_kv_heads=4,
/// vocab_size=512, seq_len=512" (vocab_size negative when unshared), the way
/// messages and tools print a header.
std::string describeLlama2cConfig(const Llama2cConfig &config);

} // namespace llamac::frontends
