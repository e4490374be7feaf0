//===- runtime/text/Tokenizer.h - Text to token ids and back ----*- C++ -*-===//
//
// Two tokenizer formats, both with llama2.c's conventions (<unk> 0, BOS 1, EOS
// 2, byte tokens <0x00>..<0xFF> at ids 3..258):
//  - a sentencepiece `.model` protobuf, encoded by the sentencepiece library;
//  - a llama2.c `tokenizer.bin` (int32 max_token_length, then per token a
//  float32
//    score, an int32 length and the piece bytes), encoded like llama2.c's
//    encode().
//
// The two agree on ordinary text. They differ where sentencepiece's normalizer
// rewrites the text: tok512.model, for one, collapses runs of spaces and drops
// leading and trailing spaces, which llama2.c's encode() keeps.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace llamac::runtime {

enum class TokenizerFormat { SentencePiece, Llama2c };

/// "sentencepiece", "llama2c".
llvm::StringRef toString(TokenizerFormat format);

/// Reads a tokenizer file and tells its format from its bytes (not its name).
/// The file is checked by building a tokenizer from it, so a file this accepts
/// also works in Tokenizer::create.
llvm::Expected<std::pair<TokenizerFormat, std::string>>
readTokenizerFile(llvm::StringRef path);

class Tokenizer {
public:
  /// `name` is used in error messages (a file name or "plan.pb tokenizer").
  static llvm::Expected<std::unique_ptr<Tokenizer>>
  create(TokenizerFormat format, llvm::StringRef bytes, llvm::StringRef name);

  virtual ~Tokenizer();

  virtual int vocabSize() const = 0;
  int bos() const { return 1; }
  int eos() const { return 2; }

  /// llama2.c's encode(): BOS when asked, a dummy-prefix space when `text` is
  /// not empty, then BPE merges, with byte fallback for unknown characters.
  virtual std::vector<int> encode(llvm::StringRef text, bool addBos) const = 0;

  /// The raw piece of `id`, with sentencepiece's "▁" shown as a space: "<0x0A>"
  /// for a byte token, " upon" for a word. BOS is "<s>" in a .model and
  /// "\n<s>\n" in a tokenizer.bin, as llama2.c exported it.
  virtual std::string piece(int id) const = 0;
};

/// Turns a stream of tokens into text with llama2.c's decode() rules: the piece
/// after BOS loses its leading space, and a byte token "<0xXX>" stands for that
/// byte. Unlike llama2.c, which drops byte tokens that do not print alone, it
/// joins them: a multi-byte UTF-8 character split over several byte tokens is
/// held back until it is complete, so every string returned is whole UTF-8
/// (bytes that are not valid UTF-8 are passed through as they come).
class Detokenizer {
public:
  explicit Detokenizer(const Tokenizer &tokenizer) : tokenizer_(tokenizer) {}

  /// The text that `token` adds after `prevToken`.
  std::string next(int prevToken, int token);
  /// Whatever is held back: the start of a character that never completed.
  std::string flush();

private:
  const Tokenizer &tokenizer_;
  std::string pending_;
};

} // namespace llamac::runtime
