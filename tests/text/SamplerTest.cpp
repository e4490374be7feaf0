//===- tests/text/SamplerTest.cpp - llama2.c's sampler --------------------===//
//
// Golden choices: tests/text/make_golden.py (a port of llama2.c's sampler,
// checked against llama2.c's C code when it was written).
//
//===----------------------------------------------------------------------===//

#include "runtime/text/Sampler.h"

#include "gtest/gtest.h"

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <new>
#include <vector>

// Counts every allocation in this program, to check that sampling makes none.
// The deletes stay out of line so GCC does not pair an inlined malloc with
// free() and warn about mismatched new and delete.
static std::atomic<size_t> gAllocations{0};
void *operator new(std::size_t size) {
  ++gAllocations;
  if (void *p = std::malloc(size ? size : 1))
    return p;
  throw std::bad_alloc();
}
[[gnu::noinline]] void operator delete(void *p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void *p, std::size_t) noexcept {
  std::free(p);
}

using namespace llamac::runtime;

namespace {

/// Exact float32 values with repeats, as test_logits() in make_golden.py.
std::vector<float> testLogits(int n) {
  std::vector<float> logits(n);
  for (int i = 0; i < n; ++i)
    logits[i] = float((i * 37) % 23 - 11) / 4.0f;
  return logits;
}

struct GoldenSampling {
  int vocabSize;
  float temperature;
  float topp;
  uint64_t seed;
  std::vector<int> picks; // one per call, fresh logits each time
};

// clang-format off
const GoldenSampling kGoldenSampling[] = {
    {32, 1.0f, 0.9f, 42, {8, 21, 21, 29, 21, 16, 13, 31, 13, 26, 8, 8, 11, 13, 18, 3, 13, 13, 24, 8, 8, 26, 8, 8}},
    {32, 0.8f, 1.0f, 42, {13, 26, 26, 31, 24, 26, 8, 16, 13, 18, 13, 13, 29, 8, 3, 18, 13, 13, 31, 13, 14, 18, 13, 13}},
    {32, 1.3f, 0.5f, 1337, {18, 18, 13, 26, 31, 13, 13, 8, 13, 31, 8, 8, 3, 8, 18, 13, 18, 3, 13, 26, 13, 18, 31, 8}},
    {32, 0.5f, 0.0f, 7, {26, 31, 8, 8, 13, 13, 26, 8, 13, 21, 18, 18, 18, 31, 8, 13, 31, 26, 18, 18, 13, 13, 18, 18}},
    {512, 1.0f, 0.9f, 2024, {254, 156, 363, 455, 80, 151, 110, 57, 481, 236, 473, 100, 133, 445, 82, 26, 13, 67, 220, 105, 404, 179, 179, 404}},
    {512, 2.0f, 0.95f, 99, {261, 25, 339, 492, 440, 323, 432, 37, 415, 13, 13, 47, 41, 228, 55, 200, 499, 220, 389, 185, 103, 445, 57, 408}},
};
// clang-format on

TEST(Sampler, MatchesLlama2c) {
  for (const GoldenSampling &golden : kGoldenSampling) {
    Sampler sampler(golden.vocabSize, golden.temperature, golden.topp,
                    golden.seed);
    std::vector<int> picks;
    for (size_t i = 0; i < golden.picks.size(); ++i) {
      std::vector<float> logits = testLogits(golden.vocabSize);
      picks.push_back(sampler.sample(logits));
    }
    EXPECT_EQ(picks, golden.picks)
        << "vocab " << golden.vocabSize << " temperature " << golden.temperature
        << " topp " << golden.topp << " seed " << golden.seed;
  }
}

TEST(Sampler, ArgmaxTakesTheLowestIndexOnTies) {
  EXPECT_EQ(argmax(std::vector<float>{1, 3, 3, 2}), 1);
  EXPECT_EQ(argmax(std::vector<float>{5, 5, 5}), 0);
  EXPECT_EQ(argmax(std::vector<float>{-4, -1, -2, -1}), 1);
  EXPECT_EQ(argmax(std::vector<float>{7}), 0);
}

TEST(Sampler, TemperatureZeroIsArgmax) {
  Sampler sampler(4, 0.0f, 0.9f, 42);
  std::vector<float> logits{0.5f, 2.0f, -1.0f, 2.0f};
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(sampler.sample(logits), 1);
  EXPECT_EQ(logits, (std::vector<float>{0.5f, 2.0f, -1.0f, 2.0f}));
}

TEST(Sampler, SameSeedSameSequence) {
  Sampler a(32, 1.0f, 0.9f, 12345), b(32, 1.0f, 0.9f, 12345),
      c(32, 1.0f, 0.9f, 54321);
  std::vector<int> fromA, fromB, fromC;
  for (int i = 0; i < 50; ++i) {
    std::vector<float> la = testLogits(32), lb = la, lc = la;
    fromA.push_back(a.sample(la));
    fromB.push_back(b.sample(lb));
    fromC.push_back(c.sample(lc));
  }
  EXPECT_EQ(fromA, fromB);
  EXPECT_NE(fromA, fromC);
}

/// Samples 10,000 times from `probabilities` (given as logits log p) and checks
/// that every count is within 5 sigma of `expected` probabilities.
void expectDistribution(std::vector<float> probabilities, float temperature,
                        float topp, std::vector<double> expected) {
  const int kDraws = 10000;
  int n = int(probabilities.size());
  Sampler sampler(n, temperature, topp, 2718281828);
  std::vector<int> counts(n);
  std::vector<float> logits(n);
  for (int draw = 0; draw < kDraws; ++draw) {
    for (int i = 0; i < n; ++i)
      logits[i] = std::log(probabilities[i]);
    ++counts[sampler.sample(logits)];
  }
  for (int i = 0; i < n; ++i) {
    double mean = kDraws * expected[i];
    double sigma = std::sqrt(kDraws * expected[i] * (1 - expected[i]));
    if (expected[i] == 0)
      EXPECT_EQ(counts[i], 0) << "token " << i;
    else
      EXPECT_NEAR(counts[i], mean, 5 * sigma) << "token " << i;
  }
}

TEST(Sampler, DistributionWithoutTopP) {
  expectDistribution({0.1f, 0.2f, 0.3f, 0.4f}, 1.0f, 1.0f,
                     {0.1, 0.2, 0.3, 0.4});
  expectDistribution({0.1f, 0.2f, 0.3f, 0.4f}, 1.0f, 0.0f,
                     {0.1, 0.2, 0.3, 0.4});
}

TEST(Sampler, TemperatureSharpens) {
  // Temperature 0.5 squares the probabilities: 1, 4, 9, 16 over 30.
  expectDistribution({0.1f, 0.2f, 0.3f, 0.4f}, 0.5f, 1.0f,
                     {1 / 30.0, 4 / 30.0, 9 / 30.0, 16 / 30.0});
}

TEST(Sampler, TopPKeepsTheNucleus) {
  // 0.4 alone does not pass 0.5, 0.4 + 0.3 does: sample 3 and 2 as 4 : 3.
  expectDistribution({0.1f, 0.2f, 0.3f, 0.4f}, 1.0f, 0.5f,
                     {0, 0, 3 / 7.0, 4 / 7.0});
}

TEST(Sampler, SampleAllocatesNothing) {
  const int kVocab = 32000;
  Sampler sampler(kVocab, 0.8f, 0.9f, 7);
  std::vector<float> logits(kVocab);
  size_t before = gAllocations.load();
  for (int step = 0; step < 20; ++step) {
    for (int i = 0; i < kVocab; ++i)
      logits[i] = float((i * 7919 + step * 104729) % 1000) / 100.0f;
    sampler.sample(logits);
  }
  EXPECT_EQ(gAllocations.load(), before);
}

} // namespace
