//===- runtime/text/SentencePieceTokenizer.cpp - sentencepiece .model -----===//
//
// Encoding is the sentencepiece library's, so its normalizer applies: the
// model's own add_dummy_prefix (llama2.c's dummy prefix comes from there) and,
// where the model asks for it, remove_extra_whitespaces.
//
//===----------------------------------------------------------------------===//

#include "runtime/text/TokenizerBackends.h"

#include <sentencepiece_processor.h>

using namespace llvm;

namespace llamac::runtime {
namespace {

class SentencePieceTokenizer final : public Tokenizer {
public:
  static Expected<std::unique_ptr<Tokenizer>> load(StringRef bytes,
                                                   StringRef name);

  int vocabSize() const override { return processor_.GetPieceSize(); }

  std::string piece(int id) const override {
    assert(id >= 0 && id < vocabSize() && "token id out of range");
    std::string raw = processor_.IdToPiece(id);
    std::string piece;
    for (StringRef rest = raw; !rest.empty();) {
      if (rest.consume_front("\xE2\x96\x81")) { // "▁", U+2581
        piece += ' ';
      } else {
        piece += rest.front();
        rest = rest.drop_front();
      }
    }
    return piece;
  }

  std::vector<int> encode(StringRef text, bool addBos) const override {
    std::vector<int> body;
    sentencepiece::util::Status status =
        processor_.Encode(std::string_view(text.data(), text.size()), &body);
    // Encode fails only on a processor that is not loaded.
    assert(status.ok() && "sentencepiece Encode failed");
    (void)status;
    if (!addBos)
      return body;
    std::vector<int> tokens{bos()};
    tokens.insert(tokens.end(), body.begin(), body.end());
    return tokens;
  }

private:
  sentencepiece::SentencePieceProcessor processor_;
};

Expected<std::unique_ptr<Tokenizer>>
SentencePieceTokenizer::load(StringRef bytes, StringRef name) {
  auto tokenizer = std::make_unique<SentencePieceTokenizer>();
  sentencepiece::SentencePieceProcessor &processor = tokenizer->processor_;
  if (sentencepiece::util::Status status = processor.LoadFromSerializedProto(
          std::string_view(bytes.data(), bytes.size()));
      !status.ok())
    return createStringError(inconvertibleErrorCode(),
                             "%s: expected a sentencepiece model, found bytes "
                             "it cannot load (%s)",
                             name.str().c_str(), status.ToString().c_str());
  if (processor.bos_id() != tokenizer->bos() ||
      processor.eos_id() != tokenizer->eos())
    return createStringError(inconvertibleErrorCode(),
                             "%s: expected BOS id 1 and EOS id 2 (llama2.c's "
                             "convention), found %d and %d",
                             name.str().c_str(), processor.bos_id(),
                             processor.eos_id());
  return std::unique_ptr<Tokenizer>(std::move(tokenizer));
}

} // namespace

Expected<std::unique_ptr<Tokenizer>>
createSentencePieceTokenizer(StringRef bytes, StringRef name) {
  return SentencePieceTokenizer::load(bytes, name);
}

} // namespace llamac::runtime
