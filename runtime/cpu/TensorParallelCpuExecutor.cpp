#include "runtime/cpu/TensorParallelCpuExecutor.h"

#include "llvm/Support/FormatVariadic.h"

#include <cstring>

namespace llamac::runtime {

using namespace ir;

bool isCollective(const Op &op) {
  return op.kind() == OpKind::AllReduce || op.kind() == OpKind::AllGather || op.kind() == OpKind::ArgMaxReduce;
}

llvm::Expected<std::unique_ptr<TensorParallelCpuExecutor>>
TensorParallelCpuExecutor::create(const Module &m, llvm::ArrayRef<llvm::StringRef> weightFiles,
                                  llvm::StringRef fileName, unsigned threads) {
  unsigned ranks = std::max<int64_t>(1, m.tensorParallel());
  if (weightFiles.size() != 1 && weightFiles.size() != ranks)
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   llvm::formatv("{0}: {1} weights files for a module of {2} ranks", fileName,
                                                 weightFiles.size(), ranks));
  auto exec = std::unique_ptr<TensorParallelCpuExecutor>(new TensorParallelCpuExecutor());
  int64_t widest = 1;
  for (const auto &f : m.functions())
    for (const auto &op : f->ops())
      if (op->result()) widest = std::max(widest, op->result()->type().numElements());
  exec->sum_.assign(widest, 0.0f);
  for (unsigned r = 0; r < ranks; ++r) {
    llvm::StringRef file = weightFiles.size() == 1 ? weightFiles[0] : weightFiles[r];
    std::string name = ranks == 1 ? fileName.str() : llvm::formatv("{0} (rank {1})", fileName, r).str();
    auto weights = WeightStore::create(m, file, name, r);
    if (!weights) return weights.takeError();
    auto rank = CpuExecutor::create(m, **weights, threads, r);
    if (!rank) return rank.takeError();
    exec->weights_.push_back(std::move(*weights));
    exec->ranks_.push_back(std::move(*rank));
  }
  return exec;
}

llvm::Error TensorParallelCpuExecutor::step(const Function &f, int token, int pos) {
  if (ranks_.size() == 1) return ranks_[0]->step(f, token, pos);
  for (auto &rank : ranks_)
    if (auto e = rank->beginStep(token, pos)) return e;
  for (const auto &op : f.ops()) {
    if (isCollective(*op)) {
      runCollective(*op);
      continue;
    }
    for (auto &rank : ranks_)
      if (auto e = rank->runOp(*op)) return e;
  }
  return llvm::Error::success();
}

void TensorParallelCpuExecutor::runCollective(const Op &op) {
  const Value *x = op.operand(0), *y = op.result();
  int64_t n = x->type().numElements();
  switch (op.kind()) {
  case OpKind::AllReduce:
    std::copy_n(ranks_[0]->data(x), n, sum_.begin());
    for (size_t r = 1; r < ranks_.size(); ++r) {
      const float *part = ranks_[r]->data(x);
      for (int64_t i = 0; i < n; ++i) sum_[i] += part[i];
    }
    for (auto &rank : ranks_) std::copy_n(sum_.begin(), n, rank->mutableData(y));
    return;
  case OpKind::AllGather:
    for (size_t r = 0; r < ranks_.size(); ++r) std::copy_n(ranks_[r]->data(x), n, sum_.begin() + r * n);
    for (auto &rank : ranks_) std::copy_n(sum_.begin(), n * ranks_.size(), rank->mutableData(y));
    return;
  case OpKind::ArgMaxReduce: {
    uint64_t best = 0;
    for (auto &rank : ranks_) {
      uint64_t key;
      std::memcpy(&key, rank->data(x), 8);
      best = std::max(best, key);
    }
    int token = argmaxKeyIndex(best);
    for (auto &rank : ranks_) std::memcpy(rank->mutableData(y), &token, 4);
    return;
  }
  default: assert(false && "not a collective");
  }
}

uint64_t TensorParallelCpuExecutor::arenaBytes() const {
  uint64_t bytes = 0;
  for (const auto &rank : ranks_) bytes += rank->arenaBytes();
  return bytes;
}

uint64_t TensorParallelCpuExecutor::kvCacheBytes() const {
  uint64_t bytes = 0;
  for (const auto &rank : ranks_) bytes += rank->kvCacheBytes();
  return bytes;
}

} // namespace llamac::runtime
