//===- tests/text/TokenizerTest.cpp - Encoding and reading tokenizers -----===//
//
// Golden ids: tests/text/make_golden.py (sentencepiece for .model files, a port
// of llama2.c's encode() for tokenizer.bin files).
//
//===----------------------------------------------------------------------===//

#include "TextTestSupport.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/raw_ostream.h"

#include <fstream>
#include <iterator>

using namespace llamac::runtime;
using namespace llamac::runtime::testing;

namespace {

struct GoldenEncoding {
  const char *text;
  std::vector<int> ids; // without BOS
};

// clang-format off
// tok512.model
const GoldenEncoding kTok512Model[] = {
    {"", {}},
    {"Once upon a time", {403, 407, 261, 378}},
    {"Lily saw a big, red ball.", {317, 394, 261, 370, 432, 352, 266, 268, 388, 426}},
    {" leading space", {278, 411, 380, 299, 262, 427, 412, 331}},
    {"trailing space ", {259, 420, 412, 290, 299, 262, 427, 412, 331}},
    {"  two  spaces  ", {259, 424, 414, 262, 427, 412, 331, 419}},
    {"line one\nline two\n\n", {278, 271, 411, 353, 411, 13, 421, 271, 411, 259, 424, 414, 13, 13}},
    {"café", {280, 412, 431, 485}},
    {"日本", {410, 233, 154, 168, 233, 159, 175}},
    {"llama 🦙!", {278, 421, 314, 412, 410, 243, 162, 169, 156, 443}},
    {"I have 42 cats.", {359, 300, 360, 410, 484, 479, 280, 294, 419, 426}},
    {"Ooooh", {319, 347, 414, 415}},
    {"hmmm", {270, 423, 423, 423}},
};

// tok512.bin
const GoldenEncoding kTok512Bin[] = {
    {"", {}},
    {"Once upon a time", {403, 407, 261, 378}},
    {"Lily saw a big, red ball.", {317, 394, 261, 370, 432, 352, 266, 268, 388, 426}},
    {" leading space", {410, 278, 411, 380, 299, 262, 427, 412, 331}},
    {"trailing space ", {259, 420, 412, 290, 299, 262, 427, 412, 331, 410}},
    {"  two  spaces  ", {410, 410, 259, 424, 414, 410, 262, 427, 412, 331, 419, 410, 410}},
    {"line one\nline two\n\n", {278, 271, 411, 353, 411, 13, 421, 271, 411, 259, 424, 414, 13, 13}},
    {"café", {280, 412, 431, 485}},
    {"日本", {410, 233, 154, 168, 233, 159, 175}},
    {"llama 🦙!", {278, 421, 314, 412, 410, 243, 162, 169, 156, 443}},
    {"I have 42 cats.", {359, 300, 360, 410, 484, 479, 280, 294, 419, 426}},
    {"Ooooh", {319, 347, 414, 415}},
    {"hmmm", {270, 423, 423, 423}},
};

// tokenizer.model
const GoldenEncoding kLlama2Model[] = {
    {"", {}},
    {"Once upon a time", {9038, 2501, 263, 931}},
    {"Lily saw a big, red ball.", {365, 2354, 4446, 263, 4802, 29892, 2654, 8287, 29889}},
    {" leading space", {29871, 8236, 2913}},
    {"trailing space ", {25053, 2913, 29871}},
    {"  two  spaces  ", {259, 1023, 29871, 8162, 259}},
    {"line one\nline two\n\n", {1196, 697, 13, 1220, 1023, 13, 13}},
    {"café", {274, 28059}},
    {"日本", {29871, 30325, 30346}},
    {"llama 🦙!", {11148, 3304, 29871, 243, 162, 169, 156, 29991}},
    {"I have 42 cats.", {306, 505, 29871, 29946, 29906, 274, 1446, 29889}},
    {"Ooooh", {438, 3634, 1148}},
    {"hmmm", {298, 4317, 29885}},
};

// tokenizer.bin
const GoldenEncoding kLlama2Bin[] = {
    {"", {}},
    {"Once upon a time", {9038, 2501, 263, 931}},
    {"Lily saw a big, red ball.", {365, 2354, 4446, 263, 4802, 29892, 2654, 8287, 29889}},
    {" leading space", {29871, 8236, 2913}},
    {"trailing space ", {25053, 2913, 29871}},
    {"  two  spaces  ", {259, 1023, 29871, 8162, 259}},
    {"line one\nline two\n\n", {1196, 697, 13, 1220, 1023, 13, 13}},
    {"café", {274, 28059}},
    {"日本", {29871, 30325, 30346}},
    {"llama 🦙!", {11148, 3304, 29871, 243, 162, 169, 156, 29991}},
    {"I have 42 cats.", {306, 505, 29871, 29946, 29906, 274, 1446, 29889}},
    {"Ooooh", {438, 3634, 1148}},
    {"hmmm", {298, 4317, 29885}},
};

// aidreams260K_tok512.bin
const GoldenEncoding kAidreamsBin[] = {
    {"", {}},
    {"Once upon a time", {429, 491, 433, 295, 429, 444, 445, 265, 262, 263, 342, 430}},
    {"Lily saw a big, red ball.", {429, 479, 331, 451, 266, 435, 449, 262, 294, 432, 442, 446, 306, 441, 294, 290, 438, 448}},
    {" leading space", {429, 429, 285, 336, 264, 420, 435, 295}},
    {"trailing space ", {263, 317, 331, 264, 420, 435, 295, 429}},
    {"  two  spaces  ", {429, 429, 263, 449, 437, 429, 420, 435, 404, 429, 429}},
    {"line one\nline two\n\n", {330, 259, 430, 401, 430, 13, 438, 259, 430, 263, 449, 437, 13, 13}},
    {"café", {273, 435, 443, 198, 172}},
    {"日本", {429, 233, 154, 168, 233, 159, 175}},
    {"llama 🦙!", {330, 438, 435, 447, 435, 429, 243, 162, 169, 156, 36}},
    {"I have 42 cats.", {303, 309, 435, 339, 429, 484, 473, 273, 268, 431, 448}},
    {"Ooooh", {429, 491, 437, 437, 437, 439}},
    {"hmmm", {309, 447, 447, 447}},
};
// clang-format on

struct TokenizerCase {
  const char *file;
  TokenizerFormat format;
  int vocabSize;
  llvm::ArrayRef<GoldenEncoding> golden;
};

const TokenizerCase kCases[] = {
    {"tok512.model", TokenizerFormat::SentencePiece, 512, kTok512Model},
    {"tok512.bin", TokenizerFormat::Llama2c, 512, kTok512Bin},
    {"tokenizer.model", TokenizerFormat::SentencePiece, 32000, kLlama2Model},
    {"tokenizer.bin", TokenizerFormat::Llama2c, 32000, kLlama2Bin},
    // Its max_token_length is 10, so the file opens with byte 0x0A like a
    // protobuf: the format sniffing has to look further.
    {"aidreams260K_tok512.bin", TokenizerFormat::Llama2c, 512, kAidreamsBin},
};

void PrintTo(const TokenizerCase &c, std::ostream *os) { *os << c.file; }

class TokenizerFiles : public ::testing::TestWithParam<TokenizerCase> {};

TEST_P(TokenizerFiles, FormatAndVocabSize) {
  const TokenizerCase &c = GetParam();
  auto file = readTokenizerFile(modelPath(c.file));
  ASSERT_TRUE(bool(file)) << llvm::toString(file.takeError());
  EXPECT_EQ(file->first, c.format);
  auto tokenizer = loadTokenizer(c.file);
  ASSERT_TRUE(tokenizer);
  EXPECT_EQ(tokenizer->vocabSize(), c.vocabSize);
  EXPECT_EQ(tokenizer->piece(13), "<0x0A>");
  EXPECT_EQ(tokenizer->piece(3 + 0xE6), "<0xE6>");
}

TEST_P(TokenizerFiles, EncodeMatchesGolden) {
  const TokenizerCase &c = GetParam();
  auto tokenizer = loadTokenizer(c.file);
  ASSERT_TRUE(tokenizer);
  for (const GoldenEncoding &golden : c.golden) {
    EXPECT_EQ(tokenizer->encode(golden.text, /*addBos=*/false), golden.ids)
        << c.file << " encoding \"" << golden.text << "\"";
    std::vector<int> withBos{1};
    withBos.insert(withBos.end(), golden.ids.begin(), golden.ids.end());
    EXPECT_EQ(tokenizer->encode(golden.text, /*addBos=*/true), withBos)
        << c.file << " encoding \"" << golden.text << "\" with BOS";
  }
}

INSTANTIATE_TEST_SUITE_P(Text, TokenizerFiles, ::testing::ValuesIn(kCases),
                         [](const auto &info) {
                           std::string name = info.param.file;
                           for (char &c : name)
                             if (!isalnum(static_cast<unsigned char>(c)))
                               c = '_';
                           return name;
                         });

TEST(Tokenizer, EmptyTextIsNothingOrJustBos) {
  for (const char *file : {"tok512.model", "tok512.bin"}) {
    auto tokenizer = loadTokenizer(file);
    ASSERT_TRUE(tokenizer);
    EXPECT_EQ(tokenizer->encode("", false), std::vector<int>{}) << file;
    EXPECT_EQ(tokenizer->encode("", true), std::vector<int>{1}) << file;
  }
}

// The same vocabulary in both formats gives the same ids wherever
// sentencepiece's normalizer leaves the text alone (tok512.model collapses
// runs of spaces and drops leading and trailing ones; llama2.c does not).
TEST(Tokenizer, Tok512ModelAndBinAgree) {
  auto model = loadTokenizer("tok512.model");
  auto bin = loadTokenizer("tok512.bin");
  ASSERT_TRUE(model && bin);
  for (const char *text :
       {"Once upon a time, there was a little girl named Lily.",
        "She loved to play outside in the park.", "line one\nline two\n\n",
        "café", "日本", "llama 🦙!", "I have 42 cats.", "x", "\n",
        "\"Hello,\" said Tom. \"Let's go!\""}) {
    EXPECT_EQ(model->encode(text, true), bin->encode(text, true)) << text;
  }
  for (int id = 3; id < 512; ++id)
    EXPECT_EQ(model->piece(id), bin->piece(id)) << "id " << id;
  EXPECT_EQ(model->piece(1), "<s>");
  EXPECT_EQ(bin->piece(1), "\n<s>\n");
}

TEST(Tokenizer, Llama2ModelAndBinAgree) {
  auto model = loadTokenizer("tokenizer.model");
  auto bin = loadTokenizer("tokenizer.bin");
  ASSERT_TRUE(model && bin);
  for (const GoldenEncoding &golden : kLlama2Model)
    EXPECT_EQ(model->encode(golden.text, true), bin->encode(golden.text, true))
        << golden.text;
  EXPECT_EQ(model->piece(9038), " Once");
  EXPECT_EQ(bin->piece(9038), " Once");
}

//===----------------------------------------------------------------------===//
// Bad files
//===----------------------------------------------------------------------===//

class BadTokenizerFile : public ::testing::Test {
protected:
  void SetUp() override {
    ASSERT_FALSE(llvm::sys::fs::createUniqueDirectory("text_tests", dir_));
  }
  void TearDown() override { llvm::sys::fs::remove_directories(dir_); }

  std::string write(llvm::StringRef name, llvm::StringRef bytes) {
    llvm::SmallString<128> path(dir_);
    llvm::sys::path::append(path, name);
    std::ofstream(path.str().str(), std::ios::binary)
        .write(bytes.data(), bytes.size());
    return path.str().str();
  }

  /// The error from reading `path`, which must fail.
  std::string readError(const std::string &path) {
    auto file = readTokenizerFile(path);
    if (file) {
      ADD_FAILURE() << path << " was accepted";
      return "";
    }
    return llvm::toString(file.takeError());
  }

  llvm::SmallString<128> dir_;
};

std::string fileBytes(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST_F(BadTokenizerFile, Missing) {
  std::string path = dir_.str().str() + "/missing.model";
  std::string error = readError(path);
  EXPECT_NE(error.find(path + ": cannot read tokenizer"), std::string::npos)
      << error;
}

TEST_F(BadTokenizerFile, Directory) {
  EXPECT_EQ(readError(dir_.str().str()),
            dir_.str().str() +
                ": expected a tokenizer file, found a directory");
}

TEST_F(BadTokenizerFile, Empty) {
  std::string path = write("empty.bin", "");
  EXPECT_EQ(readError(path),
            path + ": expected a tokenizer, found an empty file");
}

TEST_F(BadTokenizerFile, Garbage) {
  std::string path = write("garbage.model", "hello, I am not a tokenizer");
  EXPECT_EQ(readError(path),
            path +
                ": expected a sentencepiece .model or a llama2.c "
                "tokenizer.bin, found neither (file starts with 68 65 6c 6c)");
}

TEST_F(BadTokenizerFile, GarbageThatLooksLikeProtobuf) {
  std::string path =
      write("garbage.model", "\n\x05hello, I am not a tokenizer");
  std::string error = readError(path);
  EXPECT_NE(error.find(path + ": expected a sentencepiece model, found bytes "
                              "it cannot load"),
            std::string::npos)
      << error;
}

TEST_F(BadTokenizerFile, TruncatedBin) {
  std::string bytes = fileBytes(modelPath("tok512.bin"));
  ASSERT_EQ(bytes.size(), 6227u);
  // Cut inside the last piece, then inside the last token's 8-byte score and
  // length.
  std::string path = write("cut.bin", llvm::StringRef(bytes).drop_back(2));
  std::string error = readError(path);
  EXPECT_NE(error.find(path + ": truncated tokenizer.bin: token 511 at offset"),
            std::string::npos)
      << error;

  size_t lastPieceLength = loadTokenizer("tok512.bin")->piece(511).size();
  path =
      write("cut2.bin", llvm::StringRef(bytes).drop_back(lastPieceLength + 3));
  error = readError(path);
  EXPECT_NE(error.find("token 511 at offset"), std::string::npos) << error;
  EXPECT_NE(error.find("needs 8 bytes, file has 5 left"), std::string::npos)
      << error;
}

TEST_F(BadTokenizerFile, BinWithTooFewTokens) {
  std::string bytes = fileBytes(modelPath("tok512.bin"));
  // The header and the first 3 tokens (<unk>, "\n<s>\n", "\n</s>\n").
  size_t size = 4 + (8 + 5) + (8 + 5) + (8 + 6);
  std::string path =
      write("short.bin", llvm::StringRef(bytes).take_front(size));
  EXPECT_EQ(readError(path),
            path + ": expected at least 259 tokens (<unk>, <s>, </s>, 256 "
                   "bytes), found 3");
}

TEST_F(BadTokenizerFile, BinPieceLongerThanMax) {
  std::string bytes = fileBytes(modelPath("tok512.bin"));
  bytes[0] = 4; // max_token_length 4, but "<unk>" has 5 bytes
  std::string path = write("long.bin", bytes);
  EXPECT_EQ(readError(path),
            path + ": token 0 at offset 4 has length 5, expected 1 to "
                   "max_token_length 4");
}

TEST(Tokenizer, CreateNamesItsSource) {
  auto tokenizer = Tokenizer::create(TokenizerFormat::SentencePiece, "\x0a\x01",
                                     "plan.pb tokenizer");
  ASSERT_FALSE(bool(tokenizer));
  std::string error = llvm::toString(tokenizer.takeError());
  EXPECT_EQ(error.rfind("plan.pb tokenizer: ", 0), 0u) << error;

  tokenizer =
      Tokenizer::create(TokenizerFormat::Llama2c,
                        llvm::StringRef("\x07\x00", 2), "plan.pb tokenizer");
  ASSERT_FALSE(bool(tokenizer));
  EXPECT_EQ(llvm::toString(tokenizer.takeError()),
            "plan.pb tokenizer: expected a 4-byte tokenizer.bin header, found "
            "2 bytes");
}

TEST(Tokenizer, FormatNames) {
  EXPECT_EQ(toString(TokenizerFormat::SentencePiece), "sentencepiece");
  EXPECT_EQ(toString(TokenizerFormat::Llama2c), "llama2c");
}

} // namespace
