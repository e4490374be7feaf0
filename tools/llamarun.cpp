//===- tools/llamarun.cpp - Run a compiled plan ----------------------------===//
//
//   llamarun plan.pb --prompt "Once upon a time" [--steps N] [--temperature T]
//            [--top-p P] [--seed S] [--device cpu|cuda|auto] [--json]
//            [--prompt-tokens 1,403,407]
//
// Argument parsing and wiring only: runtime/ does the work.
//
//===----------------------------------------------------------------------===//

#include "runtime/Engine.h"
#include "runtime/Generate.h"
#include "runtime/Version.h"
#include "runtime/cuda/CudaEngine.h"
#include "runtime/plan/PlanFile.h"
#include "runtime/text/Tokenizer.h"

#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/WithColor.h"

#include <chrono>

using namespace llamac;
namespace cl = llvm::cl;

namespace {

cl::OptionCategory category("llamarun options");
cl::opt<std::string> planPath(cl::Positional, cl::desc("<plan.pb>"), cl::Required, cl::cat(category));
cl::opt<std::string> prompt("prompt", cl::desc("Text to start from (default: empty, i.e. BOS only)"),
                            cl::init(""), cl::cat(category));
cl::list<int> promptTokens("prompt-tokens", cl::desc("Token ids to start from, bypassing the tokenizer"),
                           cl::CommaSeparated, cl::cat(category));
cl::opt<int> steps("steps", cl::desc("Positions to run, prompt included (default 256, at most the plan's seq_len)"),
                   cl::init(256), cl::cat(category));
cl::opt<float> temperature("temperature", cl::desc("0 is greedy (default); otherwise sample"), cl::init(0.0f),
                           cl::cat(category));
cl::opt<float> topp("top-p", cl::desc("Nucleus sampling threshold (default 0.9)"), cl::init(0.9f), cl::cat(category));
cl::opt<uint64_t> seed("seed", cl::desc("Sampling seed (default: the time)"), cl::init(0), cl::cat(category));
cl::opt<std::string> device("device", cl::desc("cpu, cuda or auto (default: the GPU when there is one)"),
                            cl::init("auto"), cl::cat(category));
cl::opt<unsigned> threads("threads", cl::desc("CPU threads (default: one per core)"), cl::init(0), cl::cat(category));
cl::opt<bool> json("json", cl::desc("Print one JSON object instead of streaming text"), cl::cat(category));
cl::opt<bool> quiet("quiet", cl::desc("Print only the generated text"), cl::cat(category));

[[noreturn]] void fail(const llvm::Twine &msg) {
  llvm::WithColor::error(llvm::errs(), "llamarun") << msg << "\n";
  std::exit(1);
}

template <typename T> T check(llvm::Expected<T> v) {
  if (!v) fail(llvm::toString(v.takeError()));
  return std::move(*v);
}

void note(const llvm::Twine &msg) {
  if (!quiet) llvm::errs() << "llamarun: " << msg << "\n";
}

std::unique_ptr<runtime::Engine> createEngine(const runtime::LoadedPlan &plan, const runtime::PlanProgram &program) {
  if (device != "cpu" && device != "cuda" && device != "auto")
    fail("--device must be cpu, cuda or auto, got '" + device + "'");
  if (device != "cpu") {
    auto engine = runtime::cuda::createCudaEngine(plan, program, quiet ? nullptr : &llvm::errs());
    if (engine) return std::move(*engine);
    std::string why = llvm::toString(engine.takeError());
    if (device == "cuda") fail("cannot run on the GPU: " + why);
    note("not using the GPU: " + why + "; running on the CPU");
  }
  return check(runtime::createCpuEngine(plan, program, threads));
}

} // namespace

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  cl::HideUnrelatedOptions(category);
  cl::SetVersionPrinter([](llvm::raw_ostream &os) { os << versionString() << "\n"; });
  cl::ParseCommandLineOptions(argc, argv, "llamarun: run a plan compiled by llamac\n");

  runtime::LoadedPlan plan = check(runtime::readPlan(planPath));
  runtime::PlanProgram program = check(runtime::loadProgram(plan, planPath));
  const plan::ModelConfig &config = plan.plan.config();
  int vocab = int(config.vocab_size());

  std::unique_ptr<runtime::Tokenizer> tokenizer;
  if (plan.plan.tokenizer().format() != plan::Tokenizer::NONE) {
    auto format = plan.plan.tokenizer().format() == plan::Tokenizer::SENTENCEPIECE
                      ? runtime::TokenizerFormat::SentencePiece
                      : runtime::TokenizerFormat::Llama2c;
    tokenizer = check(runtime::Tokenizer::create(format, plan.plan.tokenizer().data(), planPath + " (tokenizer)"));
  }
  std::vector<int> tokens;
  if (!promptTokens.empty()) {
    tokens.assign(promptTokens.begin(), promptTokens.end());
  } else if (tokenizer) {
    tokens = tokenizer->encode(prompt, /*addBos=*/true);
  } else {
    if (!prompt.empty()) fail(planPath + ": the plan has no tokenizer: use --prompt-tokens, or compile with --tokenizer");
    tokens = {1};
  }

  runtime::GenerateOptions options;
  options.steps = steps;
  if (steps <= 0) fail(llvm::formatv("--steps must be positive, got {0}", steps.getValue()));
  if (uint64_t(steps) > config.seq_len()) {
    note(llvm::formatv("--steps {0} is more than the plan's {1} positions; running {1}", steps.getValue(),
                       config.seq_len()));
    options.steps = config.seq_len();
  }
  if (temperature < 0) fail("--temperature must not be negative");
  if (topp < 0 || topp > 1) fail("--top-p must be between 0 and 1");
  options.temperature = temperature;
  options.topp = topp;
  options.seed = seed ? seed.getValue() : uint64_t(std::chrono::system_clock::now().time_since_epoch().count());

  std::unique_ptr<runtime::Engine> engine = createEngine(plan, program);
  note("running on " + engine->deviceName());

  runtime::GenerateResult result =
      check(runtime::generate(*engine, tokenizer.get(), tokens, vocab, options, [&](llvm::StringRef piece) {
        if (!json) {
          llvm::outs() << piece;
          llvm::outs().flush();
        }
      }));

  if (json) {
    llvm::json::Object out{
        {"prompt_tokens", llvm::json::Array(result.promptTokens)},
        {"tokens", llvm::json::Array(result.tokens)},
        {"text", result.text},
        {"device", engine->deviceName()},
        {"ttft_ms", result.ttftMs},
        {"prefill_tok_s", result.prefillTokPerS},
        {"decode_tok_s", result.decodeTokPerS},
        {"arena_bytes", int64_t(engine->arenaBytes())},
        {"kv_cache_bytes", int64_t(engine->kvCacheBytes())},
        {"weight_bytes", int64_t(plan.plan.memory().weight_bytes())},
        {"steps", options.steps},
        {"temperature", options.temperature},
    };
    llvm::outs() << llvm::json::Value(std::move(out)) << "\n";
    return 0;
  }
  llvm::outs() << "\n";
  note(llvm::formatv("{0} prompt tokens, {1} generated; time to first token {2:f1} ms, prefill {3:f1} tok/s, "
                     "decode {4:f1} tok/s",
                     result.promptTokens.size(), result.tokens.size(), result.ttftMs, result.prefillTokPerS,
                     result.decodeTokPerS));
  return 0;
}
