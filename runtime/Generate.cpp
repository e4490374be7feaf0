#include "runtime/Generate.h"

#include "runtime/text/Sampler.h"

#include "llvm/Support/FormatVariadic.h"

#include <algorithm>
#include <chrono>

namespace llamac::runtime {

llvm::Expected<llvm::ArrayRef<int>> Engine::stepsGreedy(int token, int pos, int count, int /*then*/) {
  if (stepsOutput_.size() < size_t(count)) stepsOutput_.resize(count);
  for (int i = 0; i < count; ++i) {
    auto next = stepGreedy(token, pos + i);
    if (!next) return next.takeError();
    token = stepsOutput_[i] = *next;
  }
  return llvm::ArrayRef<int>(stepsOutput_.data(), count);
}

llvm::Error Engine::runGreedySteps(int token, int firstPos, int steps) {
  for (int done = 0; done < steps;) {
    int count = std::min(greedyChainLength(), steps - done);
    int then = std::min(greedyChainLength(), steps - done - count);
    auto outputs = stepsGreedy(token, firstPos + done, count, then);
    if (!outputs) return outputs.takeError();
    token = outputs->back();
    done += count;
  }
  return llvm::Error::success();
}

llvm::Expected<double> Engine::timeGreedySteps(int token, int firstPos, int steps) {
  auto start = std::chrono::steady_clock::now();
  if (auto e = runGreedySteps(token, firstPos, steps)) return e;
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

llvm::Expected<GenerateResult> generate(Engine &engine, const Tokenizer *tokenizer, llvm::ArrayRef<int> prompt,
                                        int vocabSize, const GenerateOptions &options,
                                        llvm::function_ref<void(llvm::StringRef)> onText) {
  if (prompt.empty())
    return llvm::createStringError(llvm::inconvertibleErrorCode(), "the prompt has no tokens (not even BOS)");
  for (int t : prompt)
    if (t < 0 || t >= vocabSize)
      return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                     llvm::formatv("prompt token {0} is outside the vocabulary of {1}", t, vocabSize));
  GenerateResult result;
  result.promptTokens.assign(prompt.begin(), prompt.end());
  Sampler sampler(vocabSize, options.temperature, options.topp, options.seed);
  std::optional<Detokenizer> detokenizer;
  if (tokenizer) detokenizer.emplace(*tokenizer);
  auto emit = [&](int prev, int token) {
    std::string piece = detokenizer ? detokenizer->next(prev, token) : std::to_string(token) + " ";
    result.text += piece;
    if (!piece.empty()) onText(piece);
  };

  using Clock = std::chrono::steady_clock;
  auto start = Clock::now();
  Clock::time_point firstToken = start;
  int nPrompt = int(prompt.size());
  int token = prompt[0];
  if (!tokenizer) emit(-1, token);
  // Greedy tokens after the prompt come from chains of steps run on the
  // device, each call announcing the chain after it; a chain may run past
  // the end of the text (a BOS), which costs only the extra steps.
  const int chain = engine.greedyChainLength();
  llvm::ArrayRef<int> chained;
  for (int pos = 0; pos < options.steps; ++pos) {
    bool inPrompt = pos + 1 < nPrompt;
    int next;
    if (!inPrompt && options.temperature == 0.0f && chain > 1) {
      if (chained.empty()) {
        int count = std::min(chain, options.steps - pos);
        auto outputs = engine.stepsGreedy(token, pos, count, std::min(chain, options.steps - pos - count));
        if (!outputs) return outputs.takeError();
        chained = *outputs;
      }
      next = chained.front();
      chained = chained.drop_front();
    } else if (inPrompt || options.temperature == 0.0f) {
      auto t = engine.stepGreedy(token, pos);
      if (!t) return t.takeError();
      next = inPrompt ? prompt[pos + 1] : *t;
    } else {
      auto logits = engine.stepLogits(token, pos);
      if (!logits) return logits.takeError();
      next = sampler.sample(*logits);
    }
    if (!inPrompt) {
      if (result.tokens.empty()) firstToken = Clock::now();
      result.tokens.push_back(next);
    }
    // llama2.c: BOS delimits sequences, so generating it ends this one.
    if (next == 1 && !inPrompt) break;
    emit(token, next);
    token = next;
  }
  if (detokenizer) {
    std::string rest = detokenizer->flush();
    result.text += rest;
    if (!rest.empty()) onText(rest);
  }
  auto end = Clock::now();
  auto seconds = [](Clock::duration d) { return std::chrono::duration<double>(d).count(); };
  double prefill = seconds(firstToken - start);
  result.ttftMs = 1000 * prefill;
  // The first generated token comes out of the last prompt position.
  if (prefill > 0) result.prefillTokPerS = nPrompt / prefill;
  if (result.tokens.size() > 1) result.decodeTokPerS = (result.tokens.size() - 1) / seconds(end - firstToken);
  return result;
}

} // namespace llamac::runtime
