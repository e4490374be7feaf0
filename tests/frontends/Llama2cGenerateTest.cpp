// The random-model generator: files the reader accepts, bytes that depend on
// the seed only, and values that keep a forward pass well conditioned.

#include "frontends/Llama2cFile.h"
#include "frontends/Llama2cGenerate.h"
#include "tests/reference/Llama2cReference.h"

#include "llvm/ADT/SmallString.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <vector>

using namespace llamac::frontends;

namespace {

/// The brief's odd-sized model: nothing is a power of two or a multiple of a
/// vector width, and the classifier is stored separately.
Llama2cConfig oddUnshared() { return Llama2cConfig{96, 250, 2, 3, 3, 257, 64, false}; }

/// Big enough (11.6M floats) to span several of the generator's 4M-float chunks.
Llama2cConfig multiChunk() { return Llama2cConfig{512, 1376, 4, 8, 4, 4096, 128, true}; }

class Llama2cGenerateTest : public ::testing::Test {
protected:
  void SetUp() override {
    ASSERT_FALSE(llvm::sys::fs::createUniqueDirectory("llamac-generate-test", dir));
  }
  void TearDown() override { llvm::sys::fs::remove_directories(dir); }

  std::string pathFor(const std::string &name) {
    llvm::SmallString<128> path(dir);
    llvm::sys::path::append(path, name);
    return std::string(path);
  }

  std::string generate(const std::string &name, const Llama2cConfig &config, uint64_t seed,
                       unsigned threads = 0) {
    std::string path = pathFor(name);
    llvm::Error error = generateLlama2cModel(config, seed, path, threads);
    EXPECT_FALSE(bool(error)) << llvm::toString(std::move(error));
    return path;
  }

  std::vector<std::string> filesInDir() {
    std::vector<std::string> names;
    std::error_code ec;
    for (llvm::sys::fs::directory_iterator it(dir, ec), end; it != end && !ec; it.increment(ec))
      names.push_back(std::string(llvm::sys::path::filename(it->path())));
    std::sort(names.begin(), names.end());
    return names;
  }

  llvm::SmallString<128> dir;
};

std::string readAll(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

/// `count` floats starting at byte `offset` of `bytes`.
std::vector<float> floatsAt(const std::string &bytes, uint64_t offset, uint64_t count) {
  std::vector<float> values(count);
  EXPECT_LE(offset + count * 4, bytes.size());
  if (offset + count * 4 <= bytes.size())
    std::memcpy(values.data(), bytes.data() + offset, count * 4);
  return values;
}

struct Stats {
  float min, max;
  double mean, variance;
};
Stats statsOf(const std::vector<float> &values) {
  Stats s{values[0], values[0], 0, 0};
  for (float v : values) {
    s.min = std::min(s.min, v);
    s.max = std::max(s.max, v);
    s.mean += v;
  }
  s.mean /= double(values.size());
  for (float v : values)
    s.variance += (v - s.mean) * (v - s.mean);
  s.variance /= double(values.size());
  return s;
}

TEST_F(Llama2cGenerateTest, WritesWhatTheReaderAccepts) {
  std::string path = generate("odd.bin", oddUnshared(), 1);
  llvm::Expected<Llama2cFile> file = readLlama2cFile(path);
  ASSERT_TRUE(bool(file)) << llvm::toString(file.takeError());
  EXPECT_EQ(describeLlama2cConfig(file->config),
            "dim=96, hidden_dim=250, n_layers=2, n_heads=3, n_kv_heads=3, "
            "vocab_size=-257, seq_len=64");
  EXPECT_FALSE(file->config.sharedClassifier);

  llvm::Expected<Llama2cLayout> expected = computeLlama2cLayout(oddUnshared(), "odd");
  ASSERT_TRUE(bool(expected));
  EXPECT_EQ(file->layout.fileSize, expected->fileSize);
  EXPECT_EQ(file->layout.classifier, expected->classifier);
  uint64_t size = 0;
  ASSERT_FALSE(llvm::sys::fs::file_size(path, size));
  EXPECT_EQ(size, expected->fileSize);
  // 257*96 + 2*(96 + 4*96*96 + 96 + 3*250*96) + 96 + 2*64*16 + 257*96 floats.
  EXPECT_EQ(size, 28u + 4u * (2 * 257 * 96 + 2 * (2 * 96 + 4 * 96 * 96 + 3 * 250 * 96) + 96 +
                              2 * 64 * 16));
  EXPECT_EQ(file->layout.classifier + 4 * 257 * 96, size);

  // The temporary file was renamed, not left behind.
  EXPECT_EQ(filesInDir(), std::vector<std::string>{"odd.bin"});
}

TEST_F(Llama2cGenerateTest, BytesDependOnTheSeedOnly) {
  std::string one = readAll(generate("one-thread.bin", multiChunk(), 42, 1));
  std::string many = readAll(generate("five-threads.bin", multiChunk(), 42, 5));
  std::string again = readAll(generate("default-threads.bin", multiChunk(), 42));
  std::string other = readAll(generate("seed43.bin", multiChunk(), 43, 3));
  ASSERT_GT(one.size(), 4u * (4u << 20) * 2) << "should span several chunks";
  EXPECT_TRUE(one == many);
  EXPECT_TRUE(one == again);
  ASSERT_EQ(one.size(), other.size());
  EXPECT_EQ(one.substr(0, 28), other.substr(0, 28));
  // Different seeds differ everywhere except the header, the constant RoPE
  // tables and the odd coincidence.
  size_t sameFloats = 0;
  for (size_t offset = 28; offset < one.size(); offset += 4)
    sameFloats += std::memcmp(one.data() + offset, other.data() + offset, 4) == 0;
  const size_t ropeFloats = 2 * 128 * 32;
  EXPECT_LT(sameFloats, ropeFloats + 2000) << "out of " << (one.size() - 28) / 4;

  // The same seed gives the same values in a smaller model too: a float's
  // value depends on its index in the file, so both models start alike.
  std::string small = readAll(generate("small-seed42.bin", oddUnshared(), 42));
  EXPECT_EQ(small.substr(28, 4 * 1000), one.substr(28, 4 * 1000));
}

TEST_F(Llama2cGenerateTest, ValuesFollowTheRecipe) {
  const Llama2cConfig config = oddUnshared();
  std::string path = generate("odd.bin", config, 5);
  llvm::Expected<Llama2cFile> file = readLlama2cFile(path);
  ASSERT_TRUE(bool(file)) << llvm::toString(file.takeError());
  const Llama2cLayout &l = file->layout;
  std::string bytes = readAll(path);

  Stats embedding = statsOf(floatsAt(bytes, l.tokenEmbedding, 257 * 96));
  EXPECT_GE(embedding.min, -std::sqrt(3.0f));
  EXPECT_LE(embedding.max, std::sqrt(3.0f));
  EXPECT_NEAR(embedding.mean, 0.0, 0.02);
  EXPECT_NEAR(embedding.variance, 1.0, 0.05);

  for (uint64_t gains : {l.rmsAtt, l.rmsFfn}) {
    Stats s = statsOf(floatsAt(bytes, gains, 2 * 96));
    EXPECT_GE(s.min, 0.9f);
    EXPECT_LE(s.max, 1.1f);
    EXPECT_GT(s.max - s.min, 0.1f) << "gains should vary";
  }
  // The final gains carry random signs (see Llama2cGenerate.h).
  std::vector<float> finalGains = floatsAt(bytes, l.rmsFinal, 96);
  size_t negative = 0;
  for (float gain : finalGains) {
    EXPECT_GE(std::fabs(gain), 0.9f);
    EXPECT_LE(std::fabs(gain), 1.1f);
    negative += gain < 0;
  }
  EXPECT_GT(negative, 96u / 4);
  EXPECT_LT(negative, 96u * 3 / 4);

  const float fromDim = std::sqrt(3.0f / 96), fromHidden = std::sqrt(3.0f / 250);
  struct Matrix {
    uint64_t offset, count;
    float bound;
  };
  for (Matrix m : {Matrix{l.wq, 2 * 96 * 96, fromDim}, Matrix{l.wk, 2 * 96 * 96, fromDim},
                   Matrix{l.wv, 2 * 96 * 96, fromDim}, Matrix{l.wo, 2 * 96 * 96, fromDim},
                   Matrix{l.w1, 2 * 250 * 96, fromDim}, Matrix{l.w2, 2 * 96 * 250, fromHidden},
                   Matrix{l.w3, 2 * 250 * 96, fromDim}, Matrix{l.classifier, 257 * 96, fromDim}}) {
    Stats s = statsOf(floatsAt(bytes, m.offset, m.count));
    EXPECT_GE(s.min, -m.bound);
    EXPECT_LE(s.max, m.bound);
    EXPECT_GT(s.max, 0.99f * m.bound);
    EXPECT_NEAR(s.variance, m.bound * m.bound / 3, 0.05 * m.bound * m.bound / 3);
  }

  // The legacy tables hold cos and sin of pos * 10000^(-2i/head_size).
  const int half = 16, seqLen = 64;
  std::vector<float> cosTable = floatsAt(bytes, l.ropeTables, seqLen * half);
  std::vector<float> sinTable = floatsAt(bytes, l.ropeTables + 4 * seqLen * half, seqLen * half);
  for (int pos : {0, 1, 7, 63})
    for (int i : {0, 1, 15}) {
      double angle = pos * std::pow(10000.0, -2.0 * i / 32);
      EXPECT_FLOAT_EQ(cosTable[size_t(pos * half + i)], float(std::cos(angle)));
      EXPECT_FLOAT_EQ(sinTable[size_t(pos * half + i)], float(std::sin(angle)));
    }
}

/// Greedy decoding on random models must visit many tokens (a tied
/// classifier without the final gains' random signs repeats one token, often
/// BOS, which ends generation) and must not hinge on float32 rounding: the
/// logits stay finite and O(1..100), with no near-ties.
TEST_F(Llama2cGenerateTest, RandomModelsDecodeWithoutTies) {
  for (const Llama2cConfig &config :
       {oddUnshared(), Llama2cConfig{128, 344, 2, 4, 2, 512, 256, true}}) {
    std::string path = generate("model.bin", config, 3);
    llvm::Expected<llamac::reference::ReferenceModel> model =
        llamac::reference::ReferenceModel::load(path);
    ASSERT_TRUE(bool(model)) << llvm::toString(model.takeError());
    const int steps = 64;
    int token = 1;
    float smallestGap = INFINITY;
    std::set<int> distinct;
    for (int pos = 0; pos < steps; pos++) {
      const std::vector<float> &logits = model->forward(token, pos);
      Stats s = statsOf(logits);
      ASSERT_TRUE(std::isfinite(s.min) && std::isfinite(s.max)) << "position " << pos;
      EXPECT_GT(std::sqrt(s.variance), 0.3) << "position " << pos;
      EXPECT_LT(std::sqrt(s.variance), 100) << "position " << pos;
      std::vector<float> sorted = logits;
      std::partial_sort(sorted.begin(), sorted.begin() + 2, sorted.end(), std::greater<float>());
      smallestGap = std::min(smallestGap, float((sorted[0] - sorted[1]) / std::sqrt(s.variance)));
      token = llamac::reference::argmaxToken(logits);
      distinct.insert(token);
    }
    // The smallest winner-to-runner-up gap over 64 steps, in units of the
    // logits' standard deviation; float32 rounding moves logits by ~1e-6 of
    // that. (Random logits are near-Gaussian: a gap below 1e-3 shows up about
    // once in 300 steps, which matters to float16 comparisons.)
    EXPECT_GT(smallestGap, 1e-4) << describeLlama2cConfig(config);
    EXPECT_GE(distinct.size(), 8u) << describeLlama2cConfig(config);
    EXPECT_EQ(llamac::reference::greedyGenerate(*model, {1}, steps).size(), size_t(steps))
        << "greedy decoding met a BOS";
    std::printf("%s: smallest top-2 gap %.4f std, %zu distinct tokens in %d steps\n",
                describeLlama2cConfig(config).c_str(), smallestGap, distinct.size(), steps);
  }
}

TEST_F(Llama2cGenerateTest, ErrorsLeaveNothingBehind) {
  std::string missingDir = pathFor("no-such-dir/model.bin");
  llvm::Error error = generateLlama2cModel(oddUnshared(), 1, missingDir);
  ASSERT_TRUE(bool(error));
  std::string message = llvm::toString(std::move(error));
  EXPECT_EQ(message.rfind(missingDir + ": cannot create a temporary file next to it: ", 0), 0u)
      << message;

  Llama2cConfig bad = oddUnshared();
  bad.nKvHeads = 2;
  std::string badPath = pathFor("bad.bin");
  error = generateLlama2cModel(bad, 1, badPath);
  ASSERT_TRUE(bool(error));
  EXPECT_EQ(llvm::toString(std::move(error)),
            badPath + ": n_heads=3 is not a multiple of n_kv_heads=2");
  EXPECT_TRUE(filesInDir().empty());
}

TEST_F(Llama2cGenerateTest, NamedShapes) {
  struct Expected {
    const char *name;
    const char *header;
  };
  for (Expected e : {
           Expected{"stories110M", "dim=768, hidden_dim=2048, n_layers=12, n_heads=12, "
                                   "n_kv_heads=12, vocab_size=32000, seq_len=1024"},
           Expected{"llama-3.2-1b", "dim=2048, hidden_dim=8192, n_layers=16, n_heads=32, "
                                    "n_kv_heads=8, vocab_size=128256, seq_len=2048"},
           Expected{"Llama-3-8B", "dim=4096, hidden_dim=14336, n_layers=32, n_heads=32, "
                                  "n_kv_heads=8, vocab_size=-128256, seq_len=2048"},
           Expected{"tiny", "dim=128, hidden_dim=344, n_layers=2, n_heads=4, n_kv_heads=2, "
                            "vocab_size=512, seq_len=256"},
       }) {
    llvm::Expected<Llama2cConfig> config = lookupLlama2cShape(e.name);
    ASSERT_TRUE(bool(config)) << llvm::toString(config.takeError());
    EXPECT_EQ(describeLlama2cConfig(*config), e.header);
    llvm::Expected<Llama2cLayout> layout = computeLlama2cLayout(*config, e.name);
    EXPECT_TRUE(bool(layout)) << llvm::toString(layout.takeError());
  }
  EXPECT_EQ(llama2cShapeNames().size(), 4u);

  llvm::Expected<Llama2cLayout> eightB =
      computeLlama2cLayout(*lookupLlama2cShape("llama-3-8b"), "8b");
  ASSERT_TRUE(bool(eightB));
  EXPECT_GT(eightB->fileSize, 32'000'000'000u);

  llvm::Expected<Llama2cConfig> unknown = lookupLlama2cShape("gpt2");
  ASSERT_FALSE(bool(unknown));
  EXPECT_EQ(llvm::toString(unknown.takeError()),
            "unknown shape 'gpt2', expected one of: stories110M, llama-3.2-1b, llama-3-8b, tiny");
}

} // namespace
