//===- runtime/text/Sampler.cpp - llama2.c's sampler ----------------------===//
//
// Float arithmetic is kept in llama2.c's order (sequential float sums, expf)
// so that the coin falls on the same side of every boundary.
//
//===----------------------------------------------------------------------===//

#include "runtime/text/Sampler.h"

#include <algorithm>
#include <cassert>
#include <cmath>

using namespace llvm;

namespace llamac::runtime {

int argmax(ArrayRef<float> values) {
  assert(!values.empty() && "argmax of nothing");
  int best = 0;
  for (int i = 1, e = int(values.size()); i < e; ++i)
    if (values[i] > values[best])
      best = i;
  return best;
}

static void softmax(MutableArrayRef<float> x) {
  float max = x[0];
  for (float value : x.drop_front())
    max = value > max ? value : max;
  float sum = 0.0f;
  for (float &value : x) {
    value = std::exp(value - max);
    sum += value;
  }
  for (float &value : x)
    value /= sum;
}

/// llama2.c's sample_mult: the first index where the running sum passes coin.
static int sampleMultinomial(ArrayRef<float> probabilities, float coin) {
  float cdf = 0.0f;
  for (int i = 0, e = int(probabilities.size()); i < e; ++i) {
    cdf += probabilities[i];
    if (coin < cdf)
      return i;
  }
  return int(probabilities.size()) - 1; // the sum fell short of 1 by rounding
}

Sampler::Sampler(int vocabSize, float temperature, float topp, uint64_t seed)
    : vocabSize_(vocabSize), temperature_(temperature), topp_(topp),
      rngState_(seed), candidates_(vocabSize) {
  assert(vocabSize > 0 && "empty vocabulary");
  assert(seed != 0 && "xorshift needs a nonzero seed");
}

float Sampler::nextCoin() {
  rngState_ ^= rngState_ >> 12;
  rngState_ ^= rngState_ << 25;
  rngState_ ^= rngState_ >> 27;
  uint32_t bits = uint32_t((rngState_ * 0x2545F4914F6CDD1Dull) >> 32);
  return float(bits >> 8) / 16777216.0f;
}

int Sampler::sample(MutableArrayRef<float> logits) {
  assert(int(logits.size()) == vocabSize_ && "logits of the wrong size");
  if (temperature_ == 0.0f)
    return argmax(logits);
  for (float &logit : logits)
    logit /= temperature_;
  softmax(logits);
  float coin = nextCoin();
  if (topp_ <= 0.0f || topp_ >= 1.0f)
    return sampleMultinomial(logits, coin);
  return sampleTopP(logits, coin);
}

/// llama2.c's sample_topp: sample from the most probable tokens whose
/// probabilities add up to more than topp.
///  1. Drop tokens below (1 - topp) / (n - 1): they cannot be in the set.
///  2. Sort the rest by descending probability. llama2.c uses qsort, which
///     glibc implements as a merge sort (stable) wherever memory allows;
///     ordering ties by index gives the same order without allocating.
///  3. Cut after the first token where the running sum passes topp.
///  4. Scale the coin by that sum and walk the cut list.
int Sampler::sampleTopP(ArrayRef<float> probabilities, float coin) {
  int n = int(probabilities.size());
  const float cutoff = (1.0f - topp_) / float(n - 1);
  size_t count = 0;
  for (int i = 0; i < n; ++i)
    if (probabilities[i] >= cutoff)
      candidates_[count++] = {probabilities[i], i};
  // No token reaches the cutoff only when topp < 1/n and the distribution is
  // nearly flat (or n is 1); llama2.c reads out of bounds there. The top token
  // is the nucleus of such a tiny topp.
  if (count == 0)
    return argmax(probabilities);
  MutableArrayRef<ProbIndex> sorted(candidates_.data(), count);
  std::sort(sorted.begin(), sorted.end(),
            [](const ProbIndex &a, const ProbIndex &b) {
              return a.prob != b.prob ? a.prob > b.prob : a.index < b.index;
            });

  float cumulative = 0.0f;
  size_t last = count - 1; // if rounding keeps the sum below topp, keep all
  for (size_t i = 0; i < count; ++i) {
    cumulative += sorted[i].prob;
    if (cumulative > topp_) {
      last = i;
      break;
    }
  }

  float r = coin * cumulative;
  float cdf = 0.0f;
  for (size_t i = 0; i <= last; ++i) {
    cdf += sorted[i].prob;
    if (r < cdf)
      return sorted[i].index;
  }
  return sorted[last].index;
}

} // namespace llamac::runtime
