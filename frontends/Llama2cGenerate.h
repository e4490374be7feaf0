//===- frontends/Llama2cGenerate.h - Random llama2.c checkpoints -*- C++ -*-===//
//
// Writes llama2.c checkpoints with random weights, for speed work and for
// comparing two implementations on shapes no trained model in the repo has
// (stories110M, Llama 3). The text such a model produces is meaningless.
//
// Every float is a pure function of (seed, its index in the file): a
// counter-based generator (splitmix64 of seed and index) lets threads fill
// chunks independently, so a 32 GB file is written at disk speed and the bytes
// do not depend on the thread count.
//
// Values are scaled so activations and logits stay O(1) (nothing near float16
// overflow) and greedy decoding moves between many tokens:
//   token embedding           uniform in [-sqrt(3), sqrt(3)]      (variance 1)
//   matrices and classifier   uniform in [-a, a], a = sqrt(3 / fan_in)
//   RMSNorm gains             1 + 0.1 * uniform in [-1, 1]
//   final RMSNorm gains       the same with a random sign, so that a tied
//                             classifier does not just repeat the input token
//   legacy RoPE tables        the real cos/sin values (theta 10000)
//
//===----------------------------------------------------------------------===//
#pragma once

#include "frontends/Llama2cFile.h"

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <cstdint>

namespace llamac::frontends {

/// The shapes known by name: "stories110M", "llama-3.2-1b", "llama-3-8b" and
/// "tiny" (a 1.7 MB GQA model for quick tests).
llvm::ArrayRef<llvm::StringRef> llama2cShapeNames();
llvm::Expected<Llama2cConfig> lookupLlama2cShape(llvm::StringRef name);

/// Writes a complete checkpoint for `config` to `path` (through a temporary
/// file in the same directory, renamed at the end, so `path` is never left
/// half written). `numThreads` 0 means one per hardware thread; the output is
/// byte-identical for every thread count.
llvm::Error generateLlama2cModel(const Llama2cConfig &config, uint64_t seed,
                                 llvm::StringRef path, unsigned numThreads = 0);

} // namespace llamac::frontends
