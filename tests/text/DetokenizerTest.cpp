//===- tests/text/DetokenizerTest.cpp - Streaming token ids to text -------===//

#include "TextTestSupport.h"

using namespace llamac::runtime;
using namespace llamac::runtime::testing;

namespace {

/// Byte token ids of `bytes` (llama2.c's byte fallback: id = byte + 3).
std::vector<int> byteTokens(llvm::StringRef bytes) {
  std::vector<int> ids;
  for (unsigned char byte : bytes)
    ids.push_back(byte + 3);
  return ids;
}

/// Streams `tokens` (which start with BOS) through a Detokenizer, one string
/// per token after BOS, then the flush.
std::vector<std::string> stream(const Tokenizer &tokenizer,
                                const std::vector<int> &tokens) {
  Detokenizer detokenizer(tokenizer);
  std::vector<std::string> pieces;
  for (size_t i = 1; i < tokens.size(); ++i)
    pieces.push_back(detokenizer.next(tokens[i - 1], tokens[i]));
  pieces.push_back(detokenizer.flush());
  return pieces;
}

std::string join(const std::vector<std::string> &pieces) {
  std::string text;
  for (const std::string &piece : pieces)
    text += piece;
  return text;
}

// Encoding with BOS and streaming back gives the text: llama2.c's decode drops
// the dummy-prefix space after BOS, and byte tokens become bytes again.
TEST(Detokenizer, RoundTrips) {
  for (const char *file : {"tok512.model", "tok512.bin", "tokenizer.model",
                           "tokenizer.bin", "aidreams260K_tok512.bin"}) {
    auto tokenizer = loadTokenizer(file);
    ASSERT_TRUE(tokenizer);
    for (const char *text :
         {"Once upon a time", "line one\nline two\n\n", "café", "日本",
          "llama 🦙!", "I have 42 cats.", "tab\there"}) {
      EXPECT_EQ(join(stream(*tokenizer, tokenizer->encode(text, true))), text)
          << file;
    }
  }
}

TEST(Detokenizer, LeadingSpacesSurviveExceptTheDummyPrefix) {
  auto tokenizer = loadTokenizer("tok512.bin");
  ASSERT_TRUE(tokenizer);
  for (const char *text :
       {" leading space", "trailing space ", "  two  spaces  "})
    EXPECT_EQ(join(stream(*tokenizer, tokenizer->encode(text, true))), text);
}

TEST(Detokenizer, StripsTheSpaceOnlyAfterBos) {
  auto tokenizer = loadTokenizer("tok512.bin");
  ASSERT_TRUE(tokenizer);
  int once = tokenizer->encode("Once", false).at(0);
  ASSERT_EQ(tokenizer->piece(once), " Once");
  Detokenizer detokenizer(*tokenizer);
  EXPECT_EQ(detokenizer.next(tokenizer->bos(), once), "Once");
  EXPECT_EQ(detokenizer.next(once, once), " Once");
}

// tok512 has no piece for 日 (E6 97 A5) or 本 (E6 9C AC): each becomes three
// byte tokens, and nothing comes out until a character's last byte arrives.
TEST(Detokenizer, HoldsBackSplitCharacters) {
  auto tokenizer = loadTokenizer("tok512.bin");
  ASSERT_TRUE(tokenizer);
  std::vector<int> ids{tokenizer->bos(), 410}; // 410 is the dummy prefix " "
  for (int id : byteTokens("日本"))
    ids.push_back(id);
  ASSERT_EQ(tokenizer->encode("日本", true), ids);
  EXPECT_EQ(stream(*tokenizer, ids),
            (std::vector<std::string>{"", "", "", "日", "", "", "本", ""}));

  ids = tokenizer->encode("a 🦙 b", true);
  EXPECT_EQ(stream(*tokenizer, ids),
            (std::vector<std::string>{"a", " ", "", "", "", "🦙", " b", ""}));
}

TEST(Detokenizer, NewlineByteComesOutAtOnce) {
  auto tokenizer = loadTokenizer("tokenizer.model");
  ASSERT_TRUE(tokenizer);
  Detokenizer detokenizer(*tokenizer);
  EXPECT_EQ(detokenizer.next(9038, 13), "\n");
  EXPECT_EQ(detokenizer.flush(), "");
}

TEST(Detokenizer, FlushGivesAnUnfinishedCharacter) {
  auto tokenizer = loadTokenizer("tok512.model");
  ASSERT_TRUE(tokenizer);
  Detokenizer detokenizer(*tokenizer);
  EXPECT_EQ(detokenizer.next(100, 3 + 0xE6), "");
  EXPECT_EQ(detokenizer.next(3 + 0xE6, 3 + 0x97), "");
  EXPECT_EQ(detokenizer.flush(), "\xE6\x97");
  EXPECT_EQ(detokenizer.flush(), "");
}

// Bytes that can never become UTF-8 are not held back.
TEST(Detokenizer, PassesInvalidBytesThrough) {
  auto tokenizer = loadTokenizer("tok512.bin");
  ASSERT_TRUE(tokenizer);
  Detokenizer detokenizer(*tokenizer);
  EXPECT_EQ(detokenizer.next(100, 3 + 0x80), "\x80");
  EXPECT_EQ(detokenizer.next(100, 3 + 0xFF), "\xFF");
  // A lead byte followed by a non-continuation byte: both come out.
  EXPECT_EQ(detokenizer.next(100, 3 + 0xE6), "");
  EXPECT_EQ(detokenizer.next(100, 3 + 'x'), "\xE6x");
}

} // namespace
