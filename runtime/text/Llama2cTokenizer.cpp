//===- runtime/text/Llama2cTokenizer.cpp - llama2.c tokenizer.bin ---------===//
//
// The file, as llama2.c's tokenizer.py exports it from a sentencepiece model:
//   int32 max_token_length
//   per token, until the end of the file: float32 score, int32 length, bytes
// The number of tokens is not stored; llama2.c takes it from the model, so here
// the file is read to its end. "▁" is already a space in the pieces.
//
// encode() follows llama2.c's run.c encode() step for step:
//  1. BOS if asked, then the piece " " as a dummy prefix if the text is not
//  empty.
//  2. One token per UTF-8 character (a run of continuation bytes is cut every 4
//     bytes); a character that is not a piece becomes its bytes, id byte + 3.
//  3. Repeatedly merge the adjacent pair whose concatenation is the piece with
//     the highest score (the leftmost pair on ties) until no pair is a piece.
//     Like llama2.c this is quadratic in the text length, but the rescan
//     compares cached scores instead of looking up every pair again.
//
//===----------------------------------------------------------------------===//

#include "runtime/text/TokenizerBackends.h"

#include "llvm/ADT/StringMap.h"
#include "llvm/Support/Endian.h"
#include "llvm/Support/FormatVariadic.h"

#include <bit>

using namespace llvm;

namespace llamac::runtime {
namespace {

/// <unk>, <s>, </s>, then the byte tokens <0x00>..<0xFF>.
constexpr size_t kMinVocabSize = 3 + 256;
constexpr int kFirstByteToken = 3;

class Llama2cTokenizer final : public Tokenizer {
public:
  Llama2cTokenizer(std::vector<std::string> pieces, std::vector<float> scores,
                   StringMap<int> ids)
      : pieces_(std::move(pieces)), scores_(std::move(scores)),
        ids_(std::move(ids)), dummyPrefix_(ids_.lookup(" ")) {}

  int vocabSize() const override { return int(pieces_.size()); }

  std::string piece(int id) const override {
    assert(id >= 0 && id < vocabSize() && "token id out of range");
    return pieces_[id];
  }

  std::vector<int> encode(StringRef text, bool addBos) const override {
    std::vector<int> tokens;
    if (addBos)
      tokens.push_back(bos());
    if (!text.empty())
      tokens.push_back(dummyPrefix_);

    auto isContinuation = [](char byte) { return (byte & 0xC0) == 0x80; };
    size_t start = 0;
    for (size_t end = 1; end <= text.size(); ++end) {
      if (end < text.size() && isContinuation(text[end]) && end - start < 4)
        continue;
      StringRef character = text.slice(start, end);
      if (auto it = ids_.find(character); it != ids_.end())
        tokens.push_back(it->second);
      else
        for (unsigned char byte : character)
          tokens.push_back(kFirstByteToken + byte);
      start = end;
    }

    // The piece each adjacent pair (i, i + 1) would merge into, or -1. A merge
    // changes only the pairs on either side of it, so only those are looked
    // up again; the choice is llama2.c's full rescan, without its lookups.
    std::string pair;
    auto mergeOf = [&](size_t i) {
      pair = pieces_[tokens[i]];
      pair += pieces_[tokens[i + 1]];
      auto it = ids_.find(pair);
      return it == ids_.end() ? -1 : it->second;
    };
    std::vector<int> merges;
    for (size_t i = 0; i + 1 < tokens.size(); ++i)
      merges.push_back(mergeOf(i));

    while (true) {
      float bestScore = -1e10f;
      size_t best = merges.size();
      for (size_t i = 0; i < merges.size(); ++i) {
        if (merges[i] >= 0 && scores_[merges[i]] > bestScore) {
          bestScore = scores_[merges[i]];
          best = i;
        }
      }
      if (best == merges.size())
        break;
      tokens[best] = merges[best];
      tokens.erase(tokens.begin() + best + 1);
      merges.erase(merges.begin() + best);
      if (best > 0)
        merges[best - 1] = mergeOf(best - 1);
      if (best < merges.size())
        merges[best] = mergeOf(best);
    }
    return tokens;
  }

private:
  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  StringMap<int> ids_;
  int dummyPrefix_;
};

Error truncated(StringRef name, size_t id, size_t offset, size_t need,
                size_t size) {
  return createStringError(
      inconvertibleErrorCode(),
      "%s: truncated tokenizer.bin: token %zu at offset %zu needs %zu "
      "bytes, file has %zu left",
      name.str().c_str(), id, offset, need, size - offset);
}

} // namespace

Expected<std::unique_ptr<Tokenizer>> createLlama2cTokenizer(StringRef bytes,
                                                            StringRef name) {
  auto readInt32 = [&](size_t offset) {
    return support::endian::read32le(bytes.data() + offset);
  };
  if (bytes.size() < 4)
    return createStringError(
        inconvertibleErrorCode(),
        "%s: expected a 4-byte tokenizer.bin header, found %zu bytes",
        name.str().c_str(), bytes.size());
  int32_t maxTokenLength = int32_t(readInt32(0));

  std::vector<std::string> pieces;
  std::vector<float> scores;
  StringMap<int> ids;
  for (size_t offset = 4; offset < bytes.size();) {
    size_t id = pieces.size();
    if (bytes.size() - offset < 8)
      return truncated(name, id, offset, 8, bytes.size());
    uint32_t scoreBits = readInt32(offset);
    int32_t length = int32_t(readInt32(offset + 4));
    // llama2.c cannot read an empty piece (its fread of 0 bytes fails).
    if (length < 1 || length > maxTokenLength)
      return createStringError(
          inconvertibleErrorCode(),
          "%s: token %zu at offset %zu has length %d, expected 1 to "
          "max_token_length %d",
          name.str().c_str(), id, offset, length, maxTokenLength);
    if (bytes.size() - offset < 8 + size_t(length))
      return truncated(name, id, offset, 8 + length, bytes.size());
    offset += 8;
    StringRef piece = bytes.substr(offset, length);
    offset += length;

    // llama2.c looks pieces up by binary search: a repeated piece would make
    // the result depend on the sort.
    if (auto [it, inserted] = ids.try_emplace(piece, int(id)); !inserted)
      return createStringError(inconvertibleErrorCode(),
                               "%s: token %zu repeats the piece of token %d",
                               name.str().c_str(), id, it->second);
    pieces.push_back(piece.str());
    scores.push_back(std::bit_cast<float>(scoreBits));
  }

  if (pieces.size() < kMinVocabSize)
    return createStringError(
        inconvertibleErrorCode(),
        "%s: expected at least %zu tokens (<unk>, <s>, </s>, 256 bytes), found "
        "%zu",
        name.str().c_str(), kMinVocabSize, pieces.size());
  // Byte fallback writes byte b as id b + 3.
  for (int byte = 0; byte < 256; ++byte) {
    std::string expected = formatv("<0x{0:X-2}>", byte).str();
    if (pieces[kFirstByteToken + byte] != expected)
      return createStringError(inconvertibleErrorCode(),
                               "%s: expected token %d to be %s, found \"%s\"",
                               name.str().c_str(), kFirstByteToken + byte,
                               expected.c_str(),
                               pieces[kFirstByteToken + byte].c_str());
  }
  if (!ids.count(" "))
    return createStringError(
        inconvertibleErrorCode(),
        "%s: expected a \" \" piece for the dummy prefix, found none",
        name.str().c_str());
  return std::make_unique<Llama2cTokenizer>(std::move(pieces),
                                            std::move(scores), std::move(ids));
}

} // namespace llamac::runtime
