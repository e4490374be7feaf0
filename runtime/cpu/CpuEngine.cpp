#include "runtime/Engine.h"

#include "ir/Parser.h"
#include "runtime/cpu/TensorParallelCpuExecutor.h"

#include "llvm/ADT/SmallPtrSet.h"
#include "llvm/Support/FormatVariadic.h"

#include <chrono>
#include <cstring>

namespace llamac::runtime {

llvm::Expected<PlanProgram> loadProgram(const LoadedPlan &plan, llvm::StringRef planName) {
  PlanProgram program;
  auto m = ir::parseModule(plan.plan.ir(), (planName + " (ir)").str());
  if (!m) return m.takeError();
  program.module = std::move(*m);
  program.decode = program.module->function("decode");
  program.decodeGreedy = program.module->function("decode_greedy");
  if (!program.decode || !program.decodeGreedy)
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "%s: the plan has no @decode and @decode_greedy functions", planName.str().c_str());
  if (program.module->tensorParallel() != int64_t(plan.plan.tensor_parallel()))
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "%s: the plan says tensor_parallel %u, its IR %lld", planName.str().c_str(),
                                   plan.plan.tensor_parallel(), (long long)program.module->tensorParallel());
  for (unsigned rank = 0; rank < plan.ranks(); ++rank)
    if (auto e = checkWeightsFit(*program.module, plan.weightsOf(rank).size(), plan.weightsFileOf(rank).file_name()))
      return e;
  return program;
}

uint64_t stepWeightBytes(const ir::Function &f) {
  llvm::SmallPtrSet<const ir::Value *, 32> seen;
  uint64_t bytes = 0;
  for (const auto &op : f.ops())
    for (const ir::Value *v : op->operands()) {
      if (!v->isWeight() || !seen.insert(v).second) continue;
      const ir::TensorType &t = v->type();
      bytes += op->kind() == ir::OpKind::Embedding ? t.byteSize() / t.shape[0] : t.byteSize();
    }
  return bytes;
}

namespace {

/// Runs every rank of the plan (one, unless it is tensor parallel) on the CPU.
class CpuEngine : public Engine {
public:
  CpuEngine(const PlanProgram &program, std::unique_ptr<TensorParallelCpuExecutor> exec, unsigned threads)
      : program_(program), exec_(std::move(exec)), threads_(threads) {}

  std::string deviceName() const override {
    if (program_.module->tensorParallel() > 0)
      return llvm::formatv("cpu ({0} threads per rank, {1} simulated tensor parallel ranks)", threads_,
                           exec_->ranks())
          .str();
    return llvm::formatv("cpu ({0} threads)", threads_).str();
  }

  llvm::Expected<int> stepGreedy(int token, int pos) override {
    if (auto e = exec_->step(*program_.decodeGreedy, token, pos)) return e;
    return exec_->outputToken(*program_.decodeGreedy);
  }

  llvm::Expected<llvm::MutableArrayRef<float>> stepLogits(int token, int pos) override {
    if (auto e = exec_->step(*program_.decode, token, pos)) return e;
    llvm::ArrayRef<float> logits = exec_->outputVector(*program_.decode);
    return llvm::MutableArrayRef<float>(const_cast<float *>(logits.data()), logits.size());
  }

  llvm::Expected<double> copyBandwidth() override {
    std::vector<char> a(256 << 20, 1), b(256 << 20);
    std::memcpy(b.data(), a.data(), a.size()); // warm the pages
    auto start = std::chrono::steady_clock::now();
    constexpr int kRepeats = 4;
    for (int i = 0; i < kRepeats; ++i) std::memcpy(i % 2 ? a.data() : b.data(), i % 2 ? b.data() : a.data(), a.size());
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return 2.0 * a.size() * kRepeats / seconds;
  }

  uint64_t arenaBytes() const override { return exec_->arenaBytes(); }
  uint64_t kvCacheBytes() const override { return exec_->kvCacheBytes(); }

private:
  const PlanProgram &program_;
  std::unique_ptr<TensorParallelCpuExecutor> exec_;
  unsigned threads_;
};

} // namespace

llvm::Expected<std::unique_ptr<Engine>> createCpuEngine(const LoadedPlan &plan, const PlanProgram &program,
                                                        unsigned threads) {
  std::vector<llvm::StringRef> files;
  for (unsigned rank = 0; rank < plan.ranks(); ++rank) files.push_back(plan.weightsOf(rank));
  auto exec = TensorParallelCpuExecutor::create(*program.module, files, plan.plan.weights().file_name(), threads);
  if (!exec) return exec.takeError();
  return std::unique_ptr<Engine>(std::make_unique<CpuEngine>(
      program, std::move(*exec), threads ? threads : std::max(1u, std::thread::hardware_concurrency())));
}

} // namespace llamac::runtime
