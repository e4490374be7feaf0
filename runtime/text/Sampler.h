//===- runtime/text/Sampler.h - Picking the next token ----------*- C++ -*-===//
//
// llama2.c's sampler, choice for choice: with the same logits, settings and
// seed it returns the same tokens as llama2.c's run.c.
//  - temperature 0: argmax (the lowest index on ties);
//  - otherwise logits /= temperature, softmax, one coin from the xorshift
//    generator, then top-p (nucleus) sampling when 0 < topp < 1, else sampling
//    from the whole distribution.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "llvm/ADT/ArrayRef.h"

#include <cstdint>
#include <vector>

namespace llamac::runtime {

/// The index of the largest value, the lowest one on ties.
int argmax(llvm::ArrayRef<float> values);

class Sampler {
public:
  /// `seed` must not be 0: xorshift would stay at 0 (llama2.c's run.c replaces
  /// 0 by the time; that choice belongs to the caller).
  Sampler(int vocabSize, float temperature, float topp, uint64_t seed);

  /// Overwrites `logits` (vocabSize values) with probabilities unless the
  /// temperature is 0. Allocates nothing.
  int sample(llvm::MutableArrayRef<float> logits);

private:
  /// llama2.c's random_f32: xorshift64*, the top 24 bits as a float in [0, 1).
  float nextCoin();
  int sampleTopP(llvm::ArrayRef<float> probabilities, float coin);

  struct ProbIndex {
    float prob;
    int index;
  };

  int vocabSize_;
  float temperature_;
  float topp_;
  uint64_t rngState_;
  std::vector<ProbIndex> candidates_; // vocabSize entries, reused by every call
};

} // namespace llamac::runtime
