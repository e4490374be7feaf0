//===- runtime/Generate.h - The generation loop -----------------*- C++ -*-===//
//
// llama2.c's generate(): feed the prompt one position at a time, then sample
// until `steps` positions or a BOS token, streaming text as it comes.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/Engine.h"
#include "runtime/text/Tokenizer.h"

#include "llvm/ADT/STLFunctionalExtras.h"

#include <vector>

namespace llamac::runtime {

struct GenerateOptions {
  /// Positions to run, prompt included (llama2.c's -n).
  int steps = 256;
  /// 0: greedy, through the plan's fused argmax.
  float temperature = 0.0f;
  float topp = 0.9f;
  uint64_t seed = 0;
};

struct GenerateResult {
  std::vector<int> promptTokens;
  std::vector<int> tokens; // generated, after the prompt
  std::string text;        // the prompt's text and the generated text, as streamed
  double ttftMs = 0;       // start to the first generated token
  double prefillTokPerS = 0;
  double decodeTokPerS = 0; // generated tokens after the first, per second
};

/// Runs the loop. `tokenizer` may be null (the plan has none): then the text
/// is the token ids separated by spaces. `onText` receives each printable
/// piece as soon as it is complete.
llvm::Expected<GenerateResult> generate(Engine &engine, const Tokenizer *tokenizer, llvm::ArrayRef<int> prompt,
                                        int vocabSize, const GenerateOptions &options,
                                        llvm::function_ref<void(llvm::StringRef)> onText);

} // namespace llamac::runtime
