//===- tools/llamagen.cpp - Write random-weight llama2.c checkpoints ------===//
//
// llamagen --shape stories110M -o stories110M-random.bin [--seed N]
//
// The generator lives in frontends/Llama2cGenerate.cpp; this file only parses
// the command line and reports.
//
//===----------------------------------------------------------------------===//

#include "frontends/Llama2cFile.h"
#include "frontends/Llama2cGenerate.h"

#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/raw_ostream.h"

#include <chrono>
#include <string>

using namespace llamac::frontends;
namespace cl = llvm::cl;

static cl::OptionCategory category("llamagen options");

static cl::opt<std::string>
    shapeName("shape", cl::desc("Named shape: stories110M, llama-3.2-1b, llama-3-8b or tiny"),
              cl::value_desc("name"), cl::cat(category));
static cl::opt<std::string> outputPath("o", cl::desc("Output file"),
                                       cl::value_desc("path"), cl::cat(category));
static cl::opt<uint64_t> seed("seed", cl::desc("Random seed (default 0)"), cl::value_desc("n"),
                              cl::init(0), cl::cat(category));
static cl::opt<int64_t> dim("dim", cl::desc("Model width"), cl::value_desc("n"), cl::cat(category));
static cl::opt<int64_t> hiddenDim("hidden-dim", cl::desc("Feed-forward width"), cl::value_desc("n"),
                                  cl::cat(category));
static cl::opt<int64_t> layers("layers", cl::desc("Number of layers"), cl::value_desc("n"),
                               cl::cat(category));
static cl::opt<int64_t> heads("heads", cl::desc("Number of query heads"), cl::value_desc("n"),
                              cl::cat(category));
static cl::opt<int64_t>
    kvHeads("kv-heads", cl::desc("Number of key/value heads (default: --heads)"),
            cl::value_desc("n"),
            cl::cat(category));
static cl::opt<int64_t> vocab("vocab", cl::desc("Vocabulary size"), cl::value_desc("n"), cl::cat(category));
static cl::opt<int64_t> seqLen("seq-len", cl::desc("Maximum sequence length"), cl::value_desc("n"),
                               cl::cat(category));
static cl::opt<bool> unsharedClassifier(
    "unshared-classifier",
    cl::desc("Store a separate classifier instead of sharing the embedding"),
    cl::cat(category));
static cl::opt<unsigned> threads(
    "threads",
    cl::desc("Worker threads, 0 for one per core (the bytes do not depend on it)"),
    cl::value_desc("n"),
    cl::init(0), cl::cat(category));

static const char kOverview[] =
    "writes a llama2.c checkpoint (legacy float32 format) with RANDOM weights\n"
    "\n"
    "  The weights are random, not trained: the text such a model produces is\n"
    "  meaningless. The files serve speed work and comparisons between two\n"
    "  implementations on shapes that no trained test model has. The same seed\n"
    "  gives the same bytes, whatever the number of threads.\n"
    "\n"
    "  Give a named shape, explicit sizes, or both (the sizes override the shape):\n"
    "    stories110M   dim 768, hidden 2048, 12 layers, 12 heads, vocab 32000, seq 1024\n"
    "    llama-3.2-1b  dim 2048, hidden 8192, 16 layers, 32 heads, 8 kv heads,\n"
    "                  vocab 128256, seq 2048, shared classifier\n"
    "    llama-3-8b    dim 4096, hidden 14336, 32 layers, 32 heads, 8 kv heads,\n"
    "                  vocab 128256, seq 2048, unshared classifier\n"
    "    tiny          dim 128, hidden 344, 2 layers, 4 heads, 2 kv heads, vocab 512, seq 256\n"
    "  The format fixes RoPE theta at 10000, so the Llama 3 shapes are shapes only.\n"
    "\n"
    "  llamagen --shape stories110M -o stories110M-random.bin --seed 1\n"
    "  llamagen --dim 96 --hidden-dim 250 --layers 2 --heads 3 --vocab 257 \\\n"
    "           --seq-len 64 --unshared-classifier -o small.bin\n";

static int reportError(const llvm::Twine &message) {
  llvm::errs() << "llamagen: error: " << message << "\n";
  return 1;
}

int main(int argc, char **argv) {
  llvm::InitLLVM initLLVM(argc, argv);
  cl::HideUnrelatedOptions(category);

  // cl prints "llamagen: <message>"; reword its errors the way ours read.
  std::string parseErrors;
  llvm::raw_string_ostream parseErrorStream(parseErrors);
  if (!cl::ParseCommandLineOptions(argc, argv, kOverview, &parseErrorStream)) {
    // Some errors (a bad option value) cl prints to stderr itself.
    llvm::SmallVector<llvm::StringRef, 4> lines;
    llvm::StringRef(parseErrorStream.str()).trim().split(lines, '\n', -1, false);
    for (size_t i = 0; i < lines.size(); ++i) {
      llvm::StringRef line = lines[i].trim();
      line.consume_front("llamagen: ");
      if (i == 0)
        reportError(line);
      else
        llvm::errs() << "llamagen: note: " << line << "\n";
    }
    return 1;
  }

  Llama2cConfig config;
  if (shapeName.getNumOccurrences()) {
    llvm::Expected<Llama2cConfig> shape = lookupLlama2cShape(shapeName);
    if (!shape)
      return reportError(llvm::toString(shape.takeError()));
    config = *shape;
  }
  struct SizeOption {
    cl::opt<int64_t> &option;
    int64_t &field;
  };
  SizeOption sizes[] = {{dim, config.dim},          {hiddenDim, config.hiddenDim},
                        {layers, config.nLayers},   {heads, config.nHeads},
                        {kvHeads, config.nKvHeads}, {vocab, config.vocabSize},
                        {seqLen, config.seqLen}};
  llvm::SmallVector<std::string, 7> missing;
  for (SizeOption &size : sizes) {
    if (size.option.getNumOccurrences())
      size.field = size.option;
    else if (!shapeName.getNumOccurrences() && &size.option != &kvHeads)
      missing.push_back("--" + size.option.ArgStr.str());
  }
  if (!missing.empty())
    return reportError("give --shape NAME or all model sizes; missing " +
                       llvm::join(missing, ", "));
  if (!shapeName.getNumOccurrences() && !kvHeads.getNumOccurrences())
    config.nKvHeads = config.nHeads;
  if (unsharedClassifier)
    config.sharedClassifier = false;
  if (outputPath.empty())
    return reportError("no output file; give -o PATH");

  llvm::Expected<Llama2cLayout> layout = computeLlama2cLayout(config, outputPath);
  if (!layout)
    return reportError(llvm::toString(layout.takeError()));

  auto start = std::chrono::steady_clock::now();
  if (llvm::Error error = generateLlama2cModel(config, seed, outputPath, threads))
    return reportError(llvm::toString(std::move(error)));
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  double megabytes = double(layout->fileSize) / 1e6;
  llvm::outs() << "llamagen: wrote " << outputPath << ": "
               << llvm::format("%.1f", megabytes) << " MB ("
               << describeLlama2cConfig(config) << ") in "
               << llvm::format("%.2f", seconds) << " s ("
               << llvm::format("%.2f", megabytes / 1e3 / std::max(seconds, 1e-9))
               << " GB/s)\n";
  llvm::outs() << "llamagen: the weights are RANDOM (seed " << seed
               << "): the model's text is meaningless; use it for speed and "
                  "consistency tests only\n";
  return 0;
}
