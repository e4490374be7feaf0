// The reference forward pass on the real trained models: greedy decoding must
// produce the stories those models were trained to write.

#include "tests/reference/Llama2cReference.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <string>

using llamac::reference::greedyGenerate;
using llamac::reference::ReferenceModel;

namespace {

std::string modelPath(const std::string &name) {
  const char *dir = std::getenv("LLAMAC_MODELS");
  return std::string(dir && *dir ? dir : LLAMAC_MODELS_DIR) + "/" + name;
}

/// Just enough of llama2.c's tokenizer.bin to turn tokens into text, as
/// run.c's decode() does: drop the space after BOS, map <0xHH> to its byte.
class PieceTable {
public:
  bool load(const std::string &path, int vocabSize) {
    std::ifstream in(path, std::ios::binary);
    int32_t maxTokenLength = 0;
    if (!in.read(reinterpret_cast<char *>(&maxTokenLength), 4))
      return false;
    for (int i = 0; i < vocabSize; i++) {
      float score;
      int32_t length;
      if (!in.read(reinterpret_cast<char *>(&score), 4) ||
          !in.read(reinterpret_cast<char *>(&length), 4) || length < 0 ||
          length > maxTokenLength)
        return false;
      std::string piece(size_t(length), '\0');
      if (!in.read(piece.data(), length))
        return false;
      pieces.push_back(piece);
    }
    return true;
  }

  std::string decode(const std::vector<int> &tokens, int first = 1) const {
    std::string text;
    int prev = first;
    for (int token : tokens) {
      std::string piece = pieces.at(size_t(token));
      if (prev == 1 && !piece.empty() && piece[0] == ' ')
        piece.erase(0, 1);
      unsigned byte;
      if (piece.size() == 6 && std::sscanf(piece.c_str(), "<0x%02X>", &byte) == 1)
        piece = std::string(1, char(byte));
      text += piece;
      prev = token;
    }
    return text;
  }

private:
  std::vector<std::string> pieces;
};

std::optional<ReferenceModel> loadModel(const std::string &name) {
  llvm::Expected<ReferenceModel> model = ReferenceModel::load(modelPath(name));
  if (!model) {
    ADD_FAILURE() << llvm::toString(model.takeError());
    return std::nullopt;
  }
  return std::move(*model);
}

std::string greedyText(const std::string &modelName, const std::string &tokenizerName,
                       int steps) {
  std::optional<ReferenceModel> model = loadModel(modelName);
  PieceTable pieces;
  if (!model || !pieces.load(modelPath(tokenizerName), model->vocabSize())) {
    ADD_FAILURE() << "cannot load " << modelName << " with " << tokenizerName;
    return "";
  }
  std::vector<int> tokens = greedyGenerate(*model, {1}, steps);
  EXPECT_EQ(tokens.size(), size_t(steps)) << "stopped early at a BOS";
  std::string text = pieces.decode(tokens);
  std::printf("%s: %s\n", modelName.c_str(), text.c_str());
  return text;
}

/// Runs `steps` greedy positions from BOS and checks that every logit is finite.
void expectFiniteLogits(const std::string &modelName, int steps) {
  std::optional<ReferenceModel> model = loadModel(modelName);
  ASSERT_TRUE(model);
  int token = 1;
  for (int pos = 0; pos < steps; pos++) {
    const std::vector<float> &logits = model->forward(token, pos);
    ASSERT_EQ(logits.size(), size_t(model->vocabSize()));
    for (float logit : logits)
      ASSERT_TRUE(std::isfinite(logit)) << modelName << " at position " << pos;
    token = llamac::reference::argmaxToken(logits);
  }
}

/// True when the text reads like words: letters, spaces and punctuation, and
/// words of a plausible length.
bool looksLikeWords(const std::string &text) {
  size_t letters = 0, other = 0, words = 0, wordLength = 0, longestWord = 0;
  for (char c : text) {
    if (std::isalpha(static_cast<unsigned char>(c))) {
      letters++;
      wordLength++;
      longestWord = std::max(longestWord, wordLength);
      continue;
    }
    if (wordLength)
      words++;
    wordLength = 0;
    if (!std::isspace(static_cast<unsigned char>(c)) && !std::ispunct(static_cast<unsigned char>(c)))
      other++;
  }
  return words >= 10 && other == 0 && letters * 10 >= text.size() * 7 && longestWord <= 15;
}

TEST(ReferenceModel, Stories260KTellsTheLilyStory) {
  std::string text = greedyText("stories260K.bin", "tok512.bin", 64);
  EXPECT_EQ(text.rfind("Once upon a time, there was a little girl named Lily. She loved "
                       "to play outside in the park.",
                       0),
            0u)
      << text;
}

TEST(ReferenceModel, Llama2xsGqaTellsTheLilyStory) {
  std::string text = greedyText("llama2xs_gqa_model.bin", "tok512.bin", 64);
  EXPECT_EQ(text.rfind("Once upon a time, there was a little girl named Lily. She loved "
                       "to play outside",
                       0),
            0u)
      << text;
  EXPECT_TRUE(looksLikeWords(text)) << text;
}

TEST(ReferenceModel, AiDreamsWritesWords) {
  std::string text = greedyText("aidreams260K.bin", "aidreams260K_tok512.bin", 64);
  EXPECT_TRUE(looksLikeWords(text)) << text;
  EXPECT_EQ(text.rfind("\"Echoes of vectors unfold, a gentle hum of precision", 0), 0u)
      << text;
}

TEST(ReferenceModel, LogitsStayFinite) {
  expectFiniteLogits("stories260K.bin", 64);
  expectFiniteLogits("llama2xs_gqa_model.bin", 64);
  expectFiniteLogits("aidreams260K.bin", 64);
}

TEST(ReferenceModel, ReadsTheHeader) {
  std::optional<ReferenceModel> model = loadModel("stories260K.bin");
  ASSERT_TRUE(model);
  const llamac::reference::ReferenceConfig &c = model->config();
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
}

TEST(ReferenceModel, GreedyFollowsTheRunCLoop) {
  std::optional<ReferenceModel> loaded = loadModel("stories260K.bin");
  ASSERT_TRUE(loaded);
  ReferenceModel &model = *loaded;
  // Prompt tokens come back first (run.c prints them), then one generated
  // token per remaining position.
  std::vector<int> tokens = greedyGenerate(model, {1, 403, 407, 261}, 10);
  ASSERT_EQ(tokens.size(), 10u);
  EXPECT_EQ(tokens[0], 403);
  EXPECT_EQ(tokens[1], 407);
  EXPECT_EQ(tokens[2], 261);

  // The same positions run again from scratch give the same tokens: forward
  // at position 0 overwrites whatever the cache held.
  EXPECT_EQ(greedyGenerate(model, {1, 403, 407, 261}, 10), tokens);

  // Greedy from BOS: the generated tokens are the argmax of each step.
  std::vector<int> fromBos = greedyGenerate(model, {1}, 5);
  int token = 1;
  for (int pos = 0; pos < 5; pos++) {
    token = llamac::reference::argmaxToken(model.forward(token, pos));
    EXPECT_EQ(fromBos[size_t(pos)], token) << "position " << pos;
  }

  // steps beyond seq_len are clamped, like run.c.
  std::optional<ReferenceModel> aidreams = loadModel("aidreams260K.bin");
  ASSERT_TRUE(aidreams);
  EXPECT_LE(greedyGenerate(*aidreams, {1}, 100000).size(), size_t(aidreams->seqLen()));
}

TEST(ReferenceModel, ArgmaxPicksTheLowestIndexOnTies) {
  EXPECT_EQ(llamac::reference::argmaxToken({0.5f, 2.0f, -1.0f, 2.0f}), 1);
  EXPECT_EQ(llamac::reference::argmaxToken({3.0f}), 0);
}

TEST(ReferenceModel, LoadErrorsNameTheFile) {
  llvm::Expected<ReferenceModel> missing = ReferenceModel::load("/nonexistent/model.bin");
  ASSERT_FALSE(missing);
  EXPECT_EQ(llvm::toString(missing.takeError()), "/nonexistent/model.bin: cannot open");

  // A tokenizer file's first bytes do not make a plausible header.
  std::string tokenizer = modelPath("tok512.bin");
  llvm::Expected<ReferenceModel> notAModel = ReferenceModel::load(tokenizer);
  ASSERT_FALSE(notAModel);
  EXPECT_EQ(llvm::toString(notAModel.takeError()),
            tokenizer + ": implausible llama2.c header");
}

} // namespace
