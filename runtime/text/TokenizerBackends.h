//===- runtime/text/TokenizerBackends.h - One factory per format -*- C++
//-*-===//
//
// Private to runtime/text: Tokenizer::create dispatches to these.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/text/Tokenizer.h"

namespace llamac::runtime {

/// A sentencepiece ModelProto, encoded by the sentencepiece library.
llvm::Expected<std::unique_ptr<Tokenizer>>
createSentencePieceTokenizer(llvm::StringRef bytes, llvm::StringRef name);

/// A llama2.c tokenizer.bin, encoded like llama2.c's encode().
llvm::Expected<std::unique_ptr<Tokenizer>>
createLlama2cTokenizer(llvm::StringRef bytes, llvm::StringRef name);

} // namespace llamac::runtime
