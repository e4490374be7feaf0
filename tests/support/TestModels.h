//===- tests/support/TestModels.h - Finding and making test models --------===//
#pragma once

#include "frontends/Llama2cFile.h"

#include "llvm/ADT/SmallString.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"

#include <cstdlib>
#include <string>

namespace llamac::test {

/// ../shared/models, or $LLAMAC_MODELS when set.
inline std::string modelsDir() {
  if (const char *dir = std::getenv("LLAMAC_MODELS")) return dir;
  return LLAMAC_MODELS_DIR;
}

inline std::string modelPath(llvm::StringRef name) {
  llvm::SmallString<256> path(modelsDir());
  llvm::sys::path::append(path, name);
  return std::string(path);
}

/// The real llama2.c checkpoints of ../shared/models with their tokenizers.
struct RealModel {
  const char *file;
  const char *tokenizer;
};
inline constexpr RealModel kRealModels[] = {
    {"stories260K.bin", "tok512.bin"},
    {"llama2xs_gqa_model.bin", "tok512.bin"},
    {"aidreams260K.bin", "aidreams260K_tok512.bin"},
};

/// A fresh directory under the system's temp folder, removed at destruction.
class TempDir {
public:
  TempDir() {
    llvm::SmallString<128> path;
    if (llvm::sys::fs::createUniqueDirectory("llamac-test", path)) std::abort();
    path_ = std::string(path);
  }
  ~TempDir() { llvm::sys::fs::remove_directories(path_); }
  const std::string &path() const { return path_; }
  std::string file(llvm::StringRef name) const {
    llvm::SmallString<256> p(path_);
    llvm::sys::path::append(p, name);
    return std::string(p);
  }

private:
  std::string path_;
};

} // namespace llamac::test
