//===- tests/text/TextTestSupport.h - Shared helpers for text_tests -*- C++
//-*-===//
#pragma once

#include "runtime/text/Tokenizer.h"

#include "gtest/gtest.h"

#include <cstdlib>
#include <string>

namespace llamac::runtime::testing {

/// A file in the real test models directory ($LLAMAC_MODELS overrides).
inline std::string modelPath(const std::string &name) {
  const char *dir = std::getenv("LLAMAC_MODELS");
  return std::string(dir ? dir : LLAMAC_MODELS_DIR) + "/" + name;
}

/// Reads and builds a tokenizer from the models directory; fails the test on
/// error.
inline std::unique_ptr<Tokenizer> loadTokenizer(const std::string &name) {
  std::string path = modelPath(name);
  auto file = readTokenizerFile(path);
  if (!file) {
    ADD_FAILURE() << llvm::toString(file.takeError());
    return nullptr;
  }
  auto tokenizer = Tokenizer::create(file->first, file->second, path);
  if (!tokenizer) {
    ADD_FAILURE() << llvm::toString(tokenizer.takeError());
    return nullptr;
  }
  return std::move(*tokenizer);
}

} // namespace llamac::runtime::testing
