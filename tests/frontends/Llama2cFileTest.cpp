// The llama2.c header reader: real models, and every way a file can be wrong.

#include "frontends/Llama2cFile.h"

#include "llvm/ADT/SmallString.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/raw_ostream.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <initializer_list>
#include <string>

using namespace llamac::frontends;

namespace {

std::string modelPath(const std::string &name) {
  const char *dir = std::getenv("LLAMAC_MODELS");
  return std::string(dir && *dir ? dir : LLAMAC_MODELS_DIR) + "/" + name;
}

/// The error message readLlama2cFile gives for `path`, or "" if it succeeds.
std::string readError(const std::string &path) {
  llvm::Expected<Llama2cFile> file = readLlama2cFile(path);
  if (file)
    return "";
  return llvm::toString(file.takeError());
}

Llama2cConfig stories260K() {
  return Llama2cConfig{64, 172, 5, 8, 4, 512, 512, true};
}

class Llama2cFileTest : public ::testing::Test {
protected:
  void SetUp() override {
    ASSERT_FALSE(llvm::sys::fs::createUniqueDirectory("llamac-frontend-test", dir));
  }
  void TearDown() override { llvm::sys::fs::remove_directories(dir); }

  std::string pathFor(const std::string &name) {
    llvm::SmallString<128> path(dir);
    llvm::sys::path::append(path, name);
    return std::string(path);
  }

  std::string writeBytes(const std::string &name, const std::string &bytes) {
    std::string path = pathFor(name);
    std::ofstream(path, std::ios::binary) << bytes;
    return path;
  }

  /// A file with the given raw header fields followed by `floats` zero floats
  /// (by default exactly as many as the header implies, when it is valid).
  std::string writeModel(const std::string &name, std::initializer_list<int32_t> header,
                         int64_t floats = -1) {
    std::string bytes;
    for (int32_t field : header)
      for (int shift = 0; shift < 32; shift += 8)
        bytes.push_back(char((uint32_t(field) >> shift) & 0xff));
    if (floats < 0) {
      std::vector<int32_t> h(header);
      Llama2cConfig config{h[0], h[1], h[2], h[3], h[4], std::abs(h[5]), h[6], h[5] > 0};
      llvm::Expected<Llama2cLayout> layout = computeLlama2cLayout(config, name);
      EXPECT_TRUE(bool(layout)) << llvm::toString(layout.takeError());
      floats = layout ? int64_t(layout->fileSize - 28) / 4 : 0;
    }
    bytes.append(size_t(floats) * 4, '\0');
    return writeBytes(name, bytes);
  }

  llvm::SmallString<128> dir;
};

TEST_F(Llama2cFileTest, ReadsStories260K) {
  std::string path = modelPath("stories260K.bin");
  llvm::Expected<Llama2cFile> file = readLlama2cFile(path);
  ASSERT_TRUE(bool(file)) << llvm::toString(file.takeError());
  const Llama2cConfig &c = file->config;
  EXPECT_EQ(file->path, path);
  EXPECT_EQ(c.dim, 64);
  EXPECT_EQ(c.hiddenDim, 172);
  EXPECT_EQ(c.nLayers, 5);
  EXPECT_EQ(c.nHeads, 8);
  EXPECT_EQ(c.nKvHeads, 4);
  EXPECT_EQ(c.vocabSize, 512);
  EXPECT_EQ(c.seqLen, 512);
  EXPECT_TRUE(c.sharedClassifier);
  EXPECT_EQ(c.headSize(), 8);
  EXPECT_EQ(c.kvDim(), 32);

  // Offsets worked out by hand from the format (SOURCES.md has the sums).
  const Llama2cLayout &l = file->layout;
  const uint64_t f = 4, layers = 5;
  EXPECT_EQ(l.tokenEmbedding, 28u);
  EXPECT_EQ(l.rmsAtt, 28 + f * 512 * 64);
  EXPECT_EQ(l.wq, l.rmsAtt + f * layers * 64);
  EXPECT_EQ(l.wk, l.wq + f * layers * 64 * 64);
  EXPECT_EQ(l.wv, l.wk + f * layers * 32 * 64);
  EXPECT_EQ(l.wo, l.wv + f * layers * 32 * 64);
  EXPECT_EQ(l.rmsFfn, l.wo + f * layers * 64 * 64);
  EXPECT_EQ(l.w1, l.rmsFfn + f * layers * 64);
  EXPECT_EQ(l.w2, l.w1 + f * layers * 172 * 64);
  EXPECT_EQ(l.w3, l.w2 + f * layers * 64 * 172);
  EXPECT_EQ(l.rmsFinal, l.w3 + f * layers * 172 * 64);
  EXPECT_EQ(l.ropeTables, l.rmsFinal + f * 64);
  EXPECT_EQ(l.fileSize, l.ropeTables + f * 2 * 512 * 4);
  EXPECT_EQ(l.fileSize, 1056540u);
  EXPECT_EQ(l.classifier, l.tokenEmbedding);
  EXPECT_EQ(Llama2cLayout::layerOffset(l.wq, 3, 64 * 64), l.wq + 3 * f * 64 * 64);
  EXPECT_EQ(Llama2cLayout::layerOffset(l.w2, 4, 64 * 172) + f * 64 * 172, l.w3);
}

TEST_F(Llama2cFileTest, ReadsTheOtherRealModels) {
  llvm::Expected<Llama2cFile> xs = readLlama2cFile(modelPath("llama2xs_gqa_model.bin"));
  ASSERT_TRUE(bool(xs)) << llvm::toString(xs.takeError());
  EXPECT_EQ(describeLlama2cConfig(xs->config),
            "dim=64, hidden_dim=192, n_layers=5, n_heads=8, n_kv_heads=4, "
            "vocab_size=512, seq_len=256");
  EXPECT_EQ(xs->layout.fileSize, 1125148u);

  llvm::Expected<Llama2cFile> ai = readLlama2cFile(modelPath("aidreams260K.bin"));
  ASSERT_TRUE(bool(ai)) << llvm::toString(ai.takeError());
  EXPECT_EQ(describeLlama2cConfig(ai->config),
            "dim=64, hidden_dim=172, n_layers=4, n_heads=4, n_kv_heads=4, "
            "vocab_size=512, seq_len=128");
  EXPECT_EQ(ai->config.headSize(), 16);
  EXPECT_EQ(ai->layout.fileSize, 932124u);
}

TEST_F(Llama2cFileTest, UnsharedClassifierComesLast) {
  std::string path = writeModel("unshared.bin", {64, 172, 2, 8, 4, -512, 16});
  llvm::Expected<Llama2cFile> file = readLlama2cFile(path);
  ASSERT_TRUE(bool(file)) << llvm::toString(file.takeError());
  EXPECT_FALSE(file->config.sharedClassifier);
  EXPECT_EQ(file->config.vocabSize, 512);
  EXPECT_EQ(file->layout.classifier, file->layout.ropeTables + 4 * 2 * 16 * 4);
  EXPECT_EQ(file->layout.classifier + 4 * 512 * 64, file->layout.fileSize);
  EXPECT_EQ(describeLlama2cConfig(file->config),
            "dim=64, hidden_dim=172, n_layers=2, n_heads=8, n_kv_heads=4, "
            "vocab_size=-512, seq_len=16");
}

TEST_F(Llama2cFileTest, WritesTheHeaderByteForByte) {
  std::string text;
  llvm::raw_string_ostream os(text);
  ASSERT_FALSE(bool(writeLlama2cHeader(os, stories260K())));
  std::ifstream real(modelPath("stories260K.bin"), std::ios::binary);
  std::string realHeader(28, '\0');
  real.read(realHeader.data(), 28);
  EXPECT_EQ(os.str(), realHeader);

  Llama2cConfig unshared = stories260K();
  unshared.sharedClassifier = false;
  std::string path = pathFor("header-only.bin");
  {
    std::error_code ec;
    llvm::raw_fd_ostream out(path, ec);
    ASSERT_FALSE(ec);
    ASSERT_FALSE(bool(writeLlama2cHeader(out, unshared)));
  }
  // Header only: the reader must recognize the negative vocab and complain
  // about the size, with both numbers.
  EXPECT_EQ(readError(path),
            path + ": file is 28 bytes, header says 1187612 (dim=64, hidden_dim=172, "
                   "n_layers=5, n_heads=8, n_kv_heads=4, vocab_size=-512, "
                   "seq_len=512, legacy float32 layout)");

  Llama2cConfig bad = stories260K();
  bad.nKvHeads = 3;
  llvm::Error error = writeLlama2cHeader(os, bad);
  ASSERT_TRUE(bool(error));
  EXPECT_EQ(llvm::toString(std::move(error)),
            "llama2.c header: n_heads=8 is not a multiple of n_kv_heads=3");
}

TEST_F(Llama2cFileTest, MissingFile) {
  std::string path = pathFor("no-such-model.bin");
  std::string error = readError(path);
  EXPECT_EQ(error.rfind(path + ": cannot open: ", 0), 0u) << error;
  EXPECT_NE(error.find("o such file"), std::string::npos) << error;
}

TEST_F(Llama2cFileTest, Directory) {
  EXPECT_EQ(readError(std::string(dir)),
            std::string(dir) + ": is a directory, expected a llama2.c checkpoint file");
}

TEST_F(Llama2cFileTest, EmptyFile) {
  std::string path = writeBytes("empty.bin", "");
  EXPECT_EQ(readError(path), path + ": file is empty, expected a llama2.c checkpoint");
}

TEST_F(Llama2cFileTest, TruncatedHeader) {
  std::string path = writeBytes("short.bin", std::string("\x40\0\0\0\xac\0\0\0\x05\0\0\0", 12));
  EXPECT_EQ(readError(path),
            path + ": file is 12 bytes, shorter than the 28-byte llama2.c header");
  path = writeBytes("one-byte.bin", "\x40");
  EXPECT_EQ(readError(path),
            path + ": file is 1 bytes, shorter than the 28-byte llama2.c header");
}

TEST_F(Llama2cFileTest, ZeroAndNegativeSizes) {
  std::string path = writeModel("zero-heads.bin", {64, 172, 5, 0, 4, 512, 512}, 16);
  EXPECT_EQ(readError(path),
            path + ": header says n_heads=0, expected a positive value (header: dim=64, "
                   "hidden_dim=172, n_layers=5, n_heads=0, n_kv_heads=4, "
                   "vocab_size=512, seq_len=512)");
  path = writeModel("negative-dim.bin", {-64, 172, 5, 8, 4, 512, 512}, 16);
  EXPECT_EQ(readError(path).rfind(path + ": header says dim=-64, expected a positive value", 0),
            0u)
      << readError(path);
  path = writeModel("zero-vocab.bin", {64, 172, 5, 8, 4, 0, 512}, 16);
  EXPECT_EQ(readError(path).rfind(path + ": header says vocab_size=0, expected a nonzero value",
                                  0),
            0u)
      << readError(path);
  path = writeModel("zero-seq.bin", {64, 172, 5, 8, 4, 512, 0}, 16);
  EXPECT_EQ(readError(path).rfind(path + ": header says seq_len=0, expected a positive value", 0),
            0u)
      << readError(path);
}

TEST_F(Llama2cFileTest, HeadsMustDivide) {
  std::string path = writeModel("heads3.bin", {64, 172, 5, 3, 3, 512, 512}, 16);
  EXPECT_EQ(readError(path), path + ": dim=64 is not a multiple of n_heads=3");
  path = writeModel("kv-more.bin", {64, 172, 5, 4, 8, 512, 512}, 16);
  EXPECT_EQ(readError(path), path + ": n_kv_heads=8 is more than n_heads=4");
  path = writeModel("kv3.bin", {96, 172, 5, 6, 4, 512, 512}, 16);
  EXPECT_EQ(readError(path), path + ": n_heads=6 is not a multiple of n_kv_heads=4");
  path = writeModel("odd-head.bin", {72, 172, 5, 8, 4, 512, 512}, 16);
  EXPECT_EQ(readError(path), path + ": head_size = dim / n_heads = 9 is odd, but RoPE "
                                    "rotates pairs of dimensions");
}

TEST_F(Llama2cFileTest, SizeMustMatchTheHeader) {
  std::string path = writeModel("short-weights.bin", {64, 172, 5, 8, 4, 512, 512}, 1000);
  EXPECT_EQ(readError(path),
            path + ": file is 4028 bytes, header says 1056540 (dim=64, hidden_dim=172, "
                   "n_layers=5, n_heads=8, n_kv_heads=4, vocab_size=512, seq_len=512, "
                   "legacy float32 layout)");
  // One float too many is as wrong as one too few.
  path = writeModel("long-weights.bin", {64, 172, 5, 8, 4, 512, 512}, (1056540 - 28) / 4 + 1);
  EXPECT_EQ(readError(path).rfind(path + ": file is 1056544 bytes, header says 1056540", 0), 0u)
      << readError(path);
  // The same header with a negative vocab needs the classifier too.
  path = writeModel("no-classifier.bin", {64, 172, 5, 8, 4, -512, 512}, (1056540 - 28) / 4);
  EXPECT_EQ(readError(path).rfind(path + ": file is 1056540 bytes, header says 1187612", 0), 0u)
      << readError(path);
}

TEST_F(Llama2cFileTest, OverflowingSizesAreErrors) {
  // 2^30 x 2^30 floats per layer, 2^30 layers: far past 2^64 bytes.
  Llama2cConfig huge{int64_t(1) << 30, 2, int64_t(1) << 30, int64_t(1) << 29, int64_t(1) << 29,
                     2, 2, true};
  llvm::Expected<Llama2cLayout> layout = computeLlama2cLayout(huge, "huge.bin");
  ASSERT_FALSE(bool(layout));
  EXPECT_EQ(llvm::toString(layout.takeError()),
            "huge.bin: header says dim=1073741824, hidden_dim=2, n_layers=1073741824, "
            "n_heads=536870912, n_kv_heads=536870912, vocab_size=2, seq_len=2, which "
            "needs more than 2^64 bytes");
  // Just below the limit the sums still fit.
  Llama2cConfig big{int64_t(1) << 20, int64_t(1) << 22, 4096, 1 << 10, 1 << 10,
                    int64_t(1) << 24, int64_t(1) << 24, false};
  llvm::Expected<Llama2cLayout> bigLayout = computeLlama2cLayout(big, "big.bin");
  ASSERT_TRUE(bool(bigLayout)) << llvm::toString(bigLayout.takeError());
  EXPECT_GT(bigLayout->fileSize, uint64_t(1) << 57);

  Llama2cConfig wide = stories260K();
  wide.dim = int64_t(1) << 31;
  layout = computeLlama2cLayout(wide, "wide.bin");
  ASSERT_FALSE(bool(layout));
  EXPECT_EQ(llvm::toString(layout.takeError()),
            "wide.bin: dim=2147483648 does not fit the header's int32 field");
}

TEST_F(Llama2cFileTest, VersionedExportsAreRejected) {
  for (int version : {1, 2}) {
    std::string bytes = "24ka"; // 0x616b3432 as little-endian bytes
    bytes += std::string(1, char(version)) + std::string(3, '\0');
    bytes += std::string(248, '\0');
    std::string path = writeBytes("v" + std::to_string(version) + ".bin", bytes);
    EXPECT_EQ(readError(path), path + ": llama2.c version " + std::to_string(version) +
                                   " export (magic ak42) is not supported; export with "
                                   "--version 0 (legacy float32)");
  }
}

TEST_F(Llama2cFileTest, OtherFormatsAreNotCheckpoints) {
  std::string gguf = modelPath("stories260K.gguf");
  EXPECT_EQ(readError(gguf),
            gguf + ": is a GGUF file, not a llama2.c checkpoint (GGUF is not supported)");

  for (const char *name : {"tok512.model", "tokenizer.model", "tok512.bin", "tokenizer.bin"}) {
    std::string path = modelPath(name);
    std::string error = readError(path);
    EXPECT_EQ(error.rfind(path + ": not a llama2.c checkpoint? header says ", 0), 0u) << error;
  }

  std::string text = writeBytes("notes.txt", "Once upon a time there was a text file.\n");
  EXPECT_EQ(readError(text),
            text + ": not a llama2.c checkpoint (it starts with text \"Once upon a time...\")");
}

TEST_F(Llama2cFileTest, ImplausibleSizesAreNotCheckpoints) {
  std::string path = writeModel("wide.bin", {1 << 21, 172, 5, 8, 4, 512, 512}, 16);
  EXPECT_EQ(readError(path),
            path + ": not a llama2.c checkpoint? header says dim=2097152, hidden_dim=172, "
                   "n_layers=5, n_heads=8, n_kv_heads=4, vocab_size=512, seq_len=512 "
                   "(dim is more than 1048576)");
  path = writeModel("deep.bin", {64, 172, 5000, 8, 4, 512, 512}, 16);
  EXPECT_NE(readError(path).find("(n_layers is more than 4096)"), std::string::npos)
      << readError(path);
  path = writeModel("vocab.bin", {64, 172, 5, 8, 4, -(1 << 25), 512}, 16);
  EXPECT_NE(readError(path).find("(vocab_size is more than 16777216)"), std::string::npos)
      << readError(path);
  path = writeModel("zeros.bin", {0, 0, 0, 0, 0, 0, 0}, 16);
  EXPECT_EQ(readError(path).rfind(path + ": not a llama2.c checkpoint? header says dim=0", 0),
            0u)
      << readError(path);
  EXPECT_NE(readError(path).find("(7 fields are not positive)"), std::string::npos);
}

} // namespace
