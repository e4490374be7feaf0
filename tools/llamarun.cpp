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
cl::opt<bool> bench("bench", cl::desc("Measure decode speed against the memory-bandwidth floor instead of generating"),
                    cl::cat(category));
cl::opt<int> benchTokens("bench-tokens", cl::desc("Greedy steps per timed run (default 128)"), cl::init(128),
                         cl::cat(category));
cl::opt<int> benchRuns("bench-runs", cl::desc("Timed runs, after one warm-up run (default 5); the median is reported"),
                       cl::init(5), cl::cat(category));

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

/// `llamarun --bench`: the copy bandwidth, then `benchRuns` timed runs of
/// `benchTokens` greedy steps after the prompt, each from the same position,
/// and the median against the floor of weight bytes over that bandwidth.
int runBench(runtime::Engine &engine, const runtime::LoadedPlan &plan, const ir::Function &step,
             llvm::ArrayRef<int> prompt) {
  uint64_t seqLen = plan.plan.config().seq_len();
  int first = int(prompt.size()) - 1;
  if (benchTokens <= 0 || benchRuns <= 0) fail("--bench-tokens and --bench-runs must be positive");
  if (uint64_t(first + benchTokens) > seqLen)
    fail(llvm::formatv("the prompt ({0} tokens) and --bench-tokens {1} do not fit the plan's {2} positions",
                       prompt.size(), benchTokens.getValue(), seqLen));
  double bandwidth = check(engine.copyBandwidth());
  for (int pos = 0; pos < first; ++pos) check(engine.stepGreedy(prompt[pos], pos));
  std::vector<double> ms;
  for (int run = 0; run <= benchRuns; ++run) {
    double t = check(engine.timeGreedySteps(prompt.back(), first, benchTokens));
    if (run > 0) ms.push_back(t); // run 0 warms up
  }
  std::sort(ms.begin(), ms.end());
  double median = ms[ms.size() / 2];
  double msPerToken = median / benchTokens;
  double tokPerS = 1000.0 / msPerToken;
  // The floor counts what a step must read, not the sidecar's size: with the
  // RMSNorm gain folded into a tied classifier, the sidecar holds the table
  // twice, but a step reads one row of one and all of the other.
  double weightBytes = double(runtime::stepWeightBytes(step));
  double floorMs = 1000.0 * weightBytes / bandwidth;
  double achieved = weightBytes * tokPerS;
  if (json) {
    llvm::json::Object out{{"device", engine.deviceName()},
                           {"model", plan.plan.config().model_name()},
                           {"weight_dtype", plan.plan.config().weight_dtype()},
                           {"kv_dtype", plan.plan.config().kv_dtype()},
                           {"step_weight_bytes", int64_t(weightBytes)},
                           {"weights_file_bytes", int64_t(plan.plan.memory().weight_bytes())},
                           {"tokens", benchTokens.getValue()},
                           {"runs", benchRuns.getValue()},
                           {"decode_tok_s", tokPerS},
                           {"ms_per_token", msPerToken},
                           {"ms_per_token_min", ms.front() / benchTokens},
                           {"ms_per_token_max", ms.back() / benchTokens},
                           {"copy_bandwidth_gb_s", bandwidth / 1e9},
                           {"achieved_gb_s", achieved / 1e9},
                           {"floor_ms_per_token", floorMs},
                           {"fraction_of_floor", floorMs / msPerToken}};
    llvm::outs() << llvm::json::Value(std::move(out)) << "\n";
    return 0;
  }
  llvm::outs() << llvm::formatv("{0}: {1} weights, {2:f1} MB read per step, on {3}\n", plan.plan.config().model_name(),
                                plan.plan.config().weight_dtype(), weightBytes / 1e6, engine.deviceName());
  llvm::outs() << llvm::formatv("copy bandwidth {0:f0} GB/s -> floor {1:f4} ms/token ({2:f0} tok/s)\n",
                                bandwidth / 1e9, floorMs, 1000.0 / floorMs);
  llvm::outs() << llvm::formatv("decode, median of {0} runs of {1} tokens: {2:f1} tok/s, {3:f4} ms/token "
                                "(spread {4:f4}..{5:f4}), {6:f0} GB/s, {7:f1}% of the floor\n",
                                benchRuns.getValue(), benchTokens.getValue(), tokPerS, msPerToken,
                                ms.front() / benchTokens, ms.back() / benchTokens, achieved / 1e9,
                                100.0 * floorMs / msPerToken);
  return 0;
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
  if (bench) return runBench(*engine, plan, *program.decodeGreedy, tokens);

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
