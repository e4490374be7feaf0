//===- tools/llamac.cpp - The llamac compiler driver ---------------------===//
//
//   llamac compile MODEL -o PLAN [--tokenizer TOK] [--dtype f32|f16|bf16] ...
//   llamac opt FILE.ir --passes=a,b,c       (IR text in, IR text out)
//   llamac dump PLAN [--ir|--memory|--summary|--dot]
//
// Argument parsing and wiring only: the work is in frontends/, passes/,
// codegen/ and runtime/.
//
//===----------------------------------------------------------------------===//

#include "codegen/CudaCodegen.h"
#include "codegen/PlanWriter.h"
#include "frontends/Llama2c.h"
#include "ir/Parser.h"
#include "ir/Printer.h"
#include "passes/Pipeline.h"
#include "passes/PlanMemory.h"
#include "runtime/Version.h"
#include "runtime/plan/PlanFile.h"
#include "runtime/text/Tokenizer.h"
#include "tools/PlanDump.h"

#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/WithColor.h"

using namespace llamac;
namespace cl = llvm::cl;

namespace {

cl::OptionCategory category("llamac options");

cl::SubCommand compileCmd("compile", "Compile a llama2.c checkpoint into a plan");
cl::SubCommand optCmd("opt", "Run passes on IR text and print the result");
cl::SubCommand dumpCmd("dump", "Print what a plan holds");

// --- compile -------------------------------------------------------------
cl::opt<std::string> modelPath(cl::Positional, cl::desc("<model.bin>"), cl::Required, cl::sub(compileCmd),
                               cl::cat(category));
cl::opt<std::string> outputPath("o", cl::desc("Output file (the plan; '-' is stdout for --emit=ir/opt-ir/cuda)"),
                                cl::value_desc("path"), cl::sub(compileCmd), cl::cat(category));
cl::opt<std::string> tokenizerPath("tokenizer", cl::desc("Tokenizer to embed (sentencepiece .model or llama2.c .bin)"),
                                   cl::value_desc("path"), cl::sub(compileCmd), cl::cat(category));
cl::opt<std::string> dtypeName("dtype", cl::desc("Weight dtype: f32, f16 or bf16 (default f32)"), cl::init("f32"),
                               cl::sub(compileCmd), cl::cat(category));
cl::opt<std::string> kvDtypeName("kv-dtype", cl::desc("KV cache dtype: f32 (default), f16 or bf16"), cl::init("f32"),
                                 cl::sub(compileCmd), cl::cat(category));
cl::opt<int64_t> maxSeqLen("max-seq-len", cl::desc("Positions the KV cache holds (default: the model's seq_len)"),
                           cl::init(0), cl::sub(compileCmd), cl::cat(category));
cl::opt<double> ropeTheta("rope-theta", cl::desc("RoPE base (default 10000, llama2.c)"), cl::init(10000.0),
                          cl::sub(compileCmd), cl::cat(category));
// Literal-valued options do not register under LLVM 14 subcommands, so the
// levels and dump views are plain flags.
cl::opt<bool> optO0("O0", cl::desc("No optimization (memory planned without reuse)"), cl::sub(compileCmd),
                    cl::cat(category));
cl::opt<bool> optO1("O1", cl::desc("Clean-up and RMSNorm gain folding"), cl::sub(compileCmd), cl::cat(category));
cl::opt<bool> optO2("O2", cl::desc("Every fusion (the default)"), cl::sub(compileCmd), cl::cat(category));
cl::opt<unsigned> tensorParallel("tp",
                                 cl::desc("Tensor parallelism: partition the plan for N GPUs of one host (default: "
                                          "not partitioned; --tp 1 partitions for one rank)"),
                                 cl::value_desc("N"), cl::init(0), cl::sub(compileCmd), cl::cat(category));
cl::list<std::string> archs("arch", cl::desc("GPU architectures to compile kernels for (default sm_80,sm_86,sm_89,sm_90)"),
                            cl::CommaSeparated, cl::sub(compileCmd), cl::cat(category));
enum class Emit { Ir, OptIr, Cuda, Plan };
cl::opt<unsigned> gemvSplit("gemv-split", cl::desc("Warps per matmul row, 1/2/4/8 (default: from each shape)"),
                            cl::init(0), cl::Hidden, cl::sub(compileCmd), cl::cat(category));
cl::opt<unsigned> attentionParts("attention-parts",
                                 cl::desc("Blocks per span of 128 x N positions of attention, 1/2/4/8 "
                                          "(default: from the heads)"),
                                 cl::init(0), cl::Hidden, cl::sub(compileCmd), cl::cat(category));
cl::opt<bool> persistent("persistent",
                         cl::desc("Run each decode step as one persistent kernel instead of a kernel per op "
                                  "(experimental: slower on the H100 when last timed, bench/NOTES.md)"),
                         cl::sub(compileCmd), cl::cat(category));
cl::opt<Emit> emit("emit", cl::desc("What to write"), cl::init(Emit::Plan),
                   cl::values(clEnumValN(Emit::Ir, "ir", "The IR as imported, before any pass"),
                              clEnumValN(Emit::OptIr, "opt-ir", "The optimized, memory-planned IR"),
                              clEnumValN(Emit::Cuda, "cuda", "The generated CUDA kernels and launch lists"),
                              clEnumValN(Emit::Plan, "plan", "plan.pb and its weights (default)")),
                   cl::sub(compileCmd), cl::cat(category));

// --- opt -------------------------------------------------------------------
cl::opt<std::string> irPath(cl::Positional, cl::desc("<file.ir>"), cl::Required, cl::sub(optCmd), cl::cat(category));
cl::list<std::string> passList("passes", cl::desc("Comma-separated passes to run, in order"), cl::CommaSeparated,
                               cl::sub(optCmd), cl::cat(category));
cl::opt<std::string> optOutput("o", cl::desc("Output file (default stdout)"), cl::init("-"), cl::sub(optCmd),
                               cl::cat(category));

// --- both: pass manager instrumentation --------------------------------------
cl::opt<bool> printAfterAll("print-after-all", cl::desc("Print the IR after every pass"), cl::sub(compileCmd),
                            cl::sub(optCmd), cl::cat(category));
cl::list<std::string> printBefore("print-before", cl::desc("Print the IR before the named pass"), cl::CommaSeparated,
                                  cl::sub(compileCmd), cl::sub(optCmd), cl::cat(category));
cl::list<std::string> printAfter("print-after", cl::desc("Print the IR after the named pass"), cl::CommaSeparated,
                                 cl::sub(compileCmd), cl::sub(optCmd), cl::cat(category));
cl::opt<bool> timePasses("time-passes", cl::desc("Time each pass"), cl::sub(compileCmd), cl::sub(optCmd),
                         cl::cat(category));

// --- dump --------------------------------------------------------------------
cl::opt<std::string> planPath(cl::Positional, cl::desc("<plan.pb>"), cl::Required, cl::sub(dumpCmd), cl::cat(category));
cl::opt<bool> dumpSummary("summary", cl::desc("Model, sizes, ops per layer (the default)"), cl::sub(dumpCmd),
                          cl::cat(category));
cl::opt<bool> dumpIr("ir", cl::desc("The optimized IR"), cl::sub(dumpCmd), cl::cat(category));
cl::opt<bool> dumpMemory("memory", cl::desc("Every arena buffer: offset, size, live range"), cl::sub(dumpCmd),
                         cl::cat(category));
cl::opt<bool> dumpDot("dot", cl::desc("Graphviz of the IR"), cl::sub(dumpCmd), cl::cat(category));

[[noreturn]] void fail(const llvm::Twine &msg) {
  llvm::WithColor::error(llvm::errs(), "llamac") << msg << "\n";
  std::exit(1);
}

void check(llvm::Error e) {
  if (e) fail(llvm::toString(std::move(e)));
}

template <typename T> T check(llvm::Expected<T> v) {
  if (!v) fail(llvm::toString(v.takeError()));
  return std::move(*v);
}

passes::PassInstrumentation instrumentation() {
  passes::PassInstrumentation inst;
  inst.printAfterAll = printAfterAll;
  inst.printBefore.assign(printBefore.begin(), printBefore.end());
  inst.printAfter.assign(printAfter.begin(), printAfter.end());
  inst.timePasses = timePasses;
  return inst;
}

/// Rejects --print-before/after names that no pass has: a typo would
/// otherwise silently print nothing.
void checkPassNames(const passes::PassManager &pm) {
  for (const auto *list : {&printBefore, &printAfter})
    for (const std::string &name : *list) {
      bool known = llvm::any_of(pm.passes(), [&](const auto &p) { return p->name() == name; });
      if (!known) fail("no pass named '" + name + "' in this pipeline");
    }
}

ir::DType parseWeightDType(llvm::StringRef name, llvm::StringRef flag) {
  std::optional<ir::DType> dtype = ir::parseDType(name);
  if (!dtype || !ir::isFloat(*dtype)) fail("--" + flag + " must be f32, f16 or bf16, got '" + name + "'");
  return *dtype;
}

void writeText(llvm::StringRef path, llvm::function_ref<void(llvm::raw_ostream &)> body) {
  check(llvm::writeToOutput(path.empty() ? "-" : path, [&](llvm::raw_ostream &os) {
    body(os);
    return llvm::Error::success();
  }));
}

plan::ModelConfig modelConfig(const frontends::Llama2cFile &file, const ir::Module &m, ir::DType dtype) {
  const frontends::Llama2cConfig &c = file.config;
  plan::ModelConfig config;
  config.set_dim(c.dim);
  config.set_hidden_dim(c.hiddenDim);
  config.set_n_layers(c.nLayers);
  config.set_n_heads(c.nHeads);
  config.set_n_kv_heads(c.nKvHeads);
  config.set_vocab_size(c.vocabSize);
  config.set_seq_len(m.kvCache().seqLen);
  config.set_head_size(c.headSize());
  config.set_rope_theta(ropeTheta);
  config.set_rms_eps(1e-5f);
  config.set_shared_classifier(c.sharedClassifier);
  config.set_weight_dtype(ir::toString(dtype).str());
  config.set_kv_dtype(ir::toString(m.kvCache().dtype).str());
  config.set_source_file(llvm::sys::path::filename(file.path).str());
  config.set_model_name(m.name());
  return config;
}

int compile() {
  ir::DType dtype = parseWeightDType(dtypeName, "dtype");
  ir::DType kvDtype = parseWeightDType(kvDtypeName, "kv-dtype");
  if (emit == Emit::Plan && outputPath.empty()) fail("no output file: give -o plan.pb");

  frontends::Llama2cFile file = check(frontends::readLlama2cFile(modelPath));
  if (maxSeqLen < 0 || maxSeqLen > file.config.seqLen)
    fail(llvm::formatv("--max-seq-len must be between 1 and the model's seq_len {0}, got {1}", file.config.seqLen,
                       maxSeqLen.getValue()));
  frontends::ImportOptions importOptions;
  importOptions.maxSeqLen = maxSeqLen;
  importOptions.ropeTheta = ropeTheta;
  importOptions.kvDtype = kvDtype;
  std::unique_ptr<ir::Module> m = check(frontends::importLlama2c(file, importOptions));

  // Read the tokenizer before the long part, so a bad path fails fast.
  plan::Tokenizer tokenizer;
  if (!tokenizerPath.empty()) {
    auto [format, bytes] = check(runtime::readTokenizerFile(tokenizerPath));
    auto tok = check(runtime::Tokenizer::create(format, bytes, tokenizerPath));
    if (tok->vocabSize() != file.config.vocabSize)
      fail(llvm::formatv("{0}: the tokenizer has {1} tokens, the model {2}", tokenizerPath.getValue(),
                         tok->vocabSize(), file.config.vocabSize));
    tokenizer.set_format(format == runtime::TokenizerFormat::SentencePiece ? plan::Tokenizer::SENTENCEPIECE
                                                                           : plan::Tokenizer::LLAMA2C);
    tokenizer.set_data(bytes);
    tokenizer.set_source_file(llvm::sys::path::filename(tokenizerPath).str());
  }

  if (emit == Emit::Ir) {
    writeText(outputPath, [&](llvm::raw_ostream &os) { ir::print(*m, os); });
    return 0;
  }

  passes::PipelineOptions pipelineOptions;
  if (optO0 + optO1 + optO2 > 1) fail("give at most one of -O0, -O1, -O2");
  pipelineOptions.optLevel = optO0 ? 0 : optO1 ? 1 : 2;
  pipelineOptions.weightDType = dtype;
  pipelineOptions.tensorParallel = tensorParallel;
  passes::PassManager pm(instrumentation());
  passes::addDefaultPipeline(pm, pipelineOptions);
  checkPassNames(pm);
  check(pm.run(*m));
  passes::MemoryPlanStats stats = passes::memoryPlanStats(*m);

  if (emit == Emit::OptIr) {
    writeText(outputPath, [&](llvm::raw_ostream &os) { ir::print(*m, os); });
    return 0;
  }

  codegen::CudaOptions cudaOptions;
  if (!archs.empty()) cudaOptions.archs.assign(archs.begin(), archs.end());
  cudaOptions.gemvSplit = gemvSplit;
  cudaOptions.attentionParts = attentionParts;
  cudaOptions.persistent = persistent;
  if (emit == Emit::Cuda) {
    plan::Plan p;
    cudaOptions.compile = false;
    cudaOptions.requireWeightsFile = false;
    check(codegen::emitCuda(*m, cudaOptions, p));
    writeText(outputPath, [&](llvm::raw_ostream &os) { codegen::printCuda(*m, p, os); });
    return 0;
  }

  auto source = llvm::MemoryBuffer::getFile(modelPath, /*IsText=*/false, /*RequiresNullTerminator=*/false);
  if (!source) fail(modelPath + ": " + source.getError().message());
  // One sidecar per rank: plan.pb.weights, or plan.pb.weights.rank0, .rank1, ...
  std::vector<runtime::WeightsWriter> weights;
  unsigned ranks = std::max(1u, tensorParallel.getValue());
  for (unsigned rank = 0; rank < ranks; ++rank)
    weights.push_back(check(runtime::WeightsWriter::create(
        outputPath + ".weights" + (ranks > 1 ? ".rank" + std::to_string(rank) : std::string()))));
  check(codegen::streamWeights(*m, (*source)->getBuffer(), modelPath, weights, &llvm::errs()));

  plan::Plan p;
  p.set_format_version(tensorParallel > 0 ? runtime::kPlanFormatVersionTensorParallel : runtime::kPlanFormatVersion);
  p.set_tensor_parallel(tensorParallel);
  p.set_producer(versionString());
  *p.mutable_config() = modelConfig(file, *m, dtype);
  *p.mutable_tokenizer() = tokenizer;
  p.set_ir(ir::toString(*m));
  codegen::describeMemory(*m, stats.unplannedBytes, *p.mutable_memory());
  check(codegen::emitCuda(*m, cudaOptions, p));
  check(weights[0].finish(*p.mutable_weights()));
  for (unsigned rank = 1; rank < ranks; ++rank) check(weights[rank].finish(*p.add_rank_weights()));
  check(runtime::writePlan(p, outputPath, weights[0], llvm::MutableArrayRef(weights).drop_front()));
  llvm::errs() << llvm::formatv("llamac: wrote {0} ({1} ops in @decode; arena {2} bytes, reduced from {3}; "
                                "KV cache {4} bytes; weights {5} bytes; {6} CUDA kernels for {7}{8})\n",
                                outputPath.getValue(), m->function("decode")->size(), stats.arenaBytes,
                                stats.unplannedBytes, m->kvCache().totalBytes(), p.memory().weight_bytes(),
                                p.kernels_size(), llvm::join(cudaOptions.archs, ","),
                                tensorParallel > 0 ? llvm::formatv("; tensor parallel, {0} ranks, sizes per rank, "
                                                                   "one weights file each",
                                                                   tensorParallel.getValue())
                                                         .str()
                                                   : std::string());
  return 0;
}

int opt() {
  auto buffer = llvm::MemoryBuffer::getFileOrSTDIN(irPath, /*IsText=*/true);
  if (!buffer) fail(irPath + ": " + buffer.getError().message());
  std::unique_ptr<ir::Module> m = check(ir::parseModule((*buffer)->getBuffer(), irPath));
  passes::PassManager pm(instrumentation());
  for (const std::string &name : passList) pm.add(check(passes::createPassByName(name)));
  checkPassNames(pm);
  check(pm.run(*m));
  writeText(optOutput, [&](llvm::raw_ostream &os) { ir::print(*m, os); });
  return 0;
}

int dump() {
  runtime::LoadedPlan loaded = check(runtime::readPlan(planPath, runtime::VerifyWeights::No));
  if (dumpSummary + dumpIr + dumpMemory + dumpDot > 1) fail("give one of --summary, --ir, --memory, --dot");
  tools::DumpKind kind = dumpIr       ? tools::DumpKind::Ir
                         : dumpMemory ? tools::DumpKind::Memory
                         : dumpDot    ? tools::DumpKind::Dot
                                      : tools::DumpKind::Summary;
  check(tools::dumpPlan(loaded.plan, planPath, kind, llvm::outs()));
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  cl::HideUnrelatedOptions(category);
  cl::SetVersionPrinter([](llvm::raw_ostream &os) { os << versionString() << "\n"; });
  cl::ParseCommandLineOptions(argc, argv,
                              "llamac: an ahead-of-time compiler for Llama-family models\n\n"
                              "  llamac compile model.bin -o plan.pb --tokenizer tokenizer.model\n"
                              "  llamac opt file.ir --passes=fold-rmsnorm-gain,canonicalize\n"
                              "  llamac dump plan.pb --memory\n");
  if (compileCmd) return compile();
  if (optCmd) return opt();
  if (dumpCmd) return dump();
  fail("expected a command: compile, opt or dump (see llamac --help)");
}
