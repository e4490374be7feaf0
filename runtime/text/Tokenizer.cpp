//===- runtime/text/Tokenizer.cpp - Reading tokenizers, detokenizing ------===//

#include "runtime/text/Tokenizer.h"
#include "runtime/text/TokenizerBackends.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <optional>

using namespace llvm;

namespace llamac::runtime {

StringRef toString(TokenizerFormat format) {
  switch (format) {
  case TokenizerFormat::SentencePiece:
    return "sentencepiece";
  case TokenizerFormat::Llama2c:
    return "llama2c";
  }
  llvm_unreachable("unknown TokenizerFormat");
}

/// A tokenizer.bin opens with max_token_length as a little-endian int32, a
/// small number, so its bytes 2 and 3 are zero. A sentencepiece ModelProto
/// opens with its first piece: tag 0x0A (field 1, length-delimited), the varint
/// length of the piece, then the piece's own tag 0x0A, so its byte 2 is never
/// zero.
static std::optional<TokenizerFormat> sniffFormat(StringRef bytes) {
  if (bytes.size() >= 4 && bytes[2] == 0 && bytes[3] == 0 &&
      (bytes[0] != 0 || bytes[1] != 0))
    return TokenizerFormat::Llama2c;
  if (!bytes.empty() && bytes[0] == 0x0A)
    return TokenizerFormat::SentencePiece;
  return std::nullopt;
}

Expected<std::pair<TokenizerFormat, std::string>>
readTokenizerFile(StringRef path) {
  if (sys::fs::is_directory(path))
    return createStringError(inconvertibleErrorCode(),
                             "%s: expected a tokenizer file, found a directory",
                             path.str().c_str());
  ErrorOr<std::unique_ptr<MemoryBuffer>> buffer = MemoryBuffer::getFile(
      path, /*IsText=*/false, /*RequiresNullTerminator=*/false);
  if (!buffer)
    return createStringError(buffer.getError(), "%s: cannot read tokenizer: %s",
                             path.str().c_str(),
                             buffer.getError().message().c_str());
  StringRef bytes = (*buffer)->getBuffer();
  if (bytes.empty())
    return createStringError(inconvertibleErrorCode(),
                             "%s: expected a tokenizer, found an empty file",
                             path.str().c_str());

  std::optional<TokenizerFormat> format = sniffFormat(bytes);
  if (!format) {
    std::string start;
    raw_string_ostream os(start);
    for (unsigned char byte : bytes.take_front(4))
      os << format_hex_no_prefix(byte, 2) << ' ';
    return createStringError(
        inconvertibleErrorCode(),
        "%s: expected a sentencepiece .model or a llama2.c tokenizer.bin, "
        "found neither (file starts with %s)",
        path.str().c_str(), StringRef(start).rtrim().str().c_str());
  }
  if (Expected<std::unique_ptr<Tokenizer>> tokenizer =
          Tokenizer::create(*format, bytes, path);
      !tokenizer)
    return tokenizer.takeError();
  return std::make_pair(*format, bytes.str());
}

Expected<std::unique_ptr<Tokenizer>>
Tokenizer::create(TokenizerFormat format, StringRef bytes, StringRef name) {
  switch (format) {
  case TokenizerFormat::SentencePiece:
    return createSentencePieceTokenizer(bytes, name);
  case TokenizerFormat::Llama2c:
    return createLlama2cTokenizer(bytes, name);
  }
  llvm_unreachable("unknown TokenizerFormat");
}

Tokenizer::~Tokenizer() = default;

//===----------------------------------------------------------------------===//
// Detokenizer
//===----------------------------------------------------------------------===//

/// The byte that a byte token such as "<0x0A>" stands for.
static std::optional<char> parseBytePiece(StringRef piece) {
  unsigned value;
  if (piece.size() == 6 && piece.startswith("<0x") && piece.endswith(">") &&
      !piece.substr(3, 2).getAsInteger(16, value))
    return char(value);
  return std::nullopt;
}

/// How many bytes a UTF-8 character that starts with `lead` has (1 for a byte
/// that cannot start one).
static size_t utf8Length(unsigned char lead) {
  if (lead >= 0xF0 && lead <= 0xF7)
    return 4;
  if (lead >= 0xE0)
    return lead <= 0xEF ? 3 : 1;
  if (lead >= 0xC0)
    return 2;
  return 1;
}

/// How many bytes at the end of `text` are the start of a character that
/// needs more bytes.
static size_t incompleteTail(StringRef text) {
  for (size_t back = 1; back <= std::min<size_t>(3, text.size()); ++back) {
    unsigned char byte = text[text.size() - back];
    if ((byte & 0xC0) == 0x80)
      continue; // a continuation byte: look further back for the lead byte
    return utf8Length(byte) > back ? back : 0;
  }
  return 0;
}

std::string Detokenizer::next(int prevToken, int token) {
  std::string piece = tokenizer_.piece(token);
  StringRef text = piece;
  // sentencepiece's decoder drops the dummy-prefix space; llama2.c does so
  // after every BOS.
  if (prevToken == tokenizer_.bos() && text.startswith(" "))
    text = text.drop_front();
  if (std::optional<char> byte = parseBytePiece(text))
    pending_ += *byte;
  else
    pending_ += text;

  size_t complete = pending_.size() - incompleteTail(pending_);
  std::string out = pending_.substr(0, complete);
  pending_.erase(0, complete);
  return out;
}

std::string Detokenizer::flush() { return std::exchange(pending_, {}); }

} // namespace llamac::runtime
