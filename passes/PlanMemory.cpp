#include "passes/PlanMemory.h"

#include "llvm/ADT/DenseMap.h"
#include "llvm/Support/MathExtras.h"

#include <map>
#include <optional>

namespace llamac::passes {

using namespace ir;

namespace {

uint64_t slotBytes(const Value *v) { return llvm::alignTo(v->type().byteSize(), kArenaAlignment); }

/// Operands whose block `op` may write its result over (step 2a), preferred first.
llvm::SmallVector<const Value *, 2> inPlaceCandidates(const Op &op) {
  switch (op.kind()) {
  case OpKind::MatMulAdd:
    if (op.operand(2) == op.operand(0)) return {}; // every output row reads all of x
    return {op.operand(2)};
  case OpKind::Add: return {op.operand(0), op.operand(1)};
  default: return {};
  }
}

struct FunctionPlan {
  llvm::DenseMap<const Value *, uint64_t> offsets;
  uint64_t bytes = 0;
};

FunctionPlan planFunction(const Function &f, bool reuse) {
  FunctionPlan plan;
  const auto &ops = f.ops();
  if (!reuse) {
    for (const auto &op : ops)
      if (const Value *r = op->result()) {
        plan.offsets[r] = plan.bytes;
        plan.bytes += slotBytes(r);
      }
    return plan;
  }

  // Step 1: the last op index at which each result is read.
  llvm::DenseMap<const Value *, size_t> lastUse;
  for (size_t i = 0; i < ops.size(); ++i) {
    if (const Value *r = ops[i]->result()) lastUse[r] = i;
    for (const Value *v : ops[i]->operands())
      if (v->definingOp()) lastUse[v] = i;
  }
  for (const Value *r : f.results()) lastUse[r] = ops.size();

  // Step 2: live blocks by offset, and the block each live value owns.
  std::map<uint64_t, uint64_t> blocks; // offset -> size
  llvm::DenseMap<const Value *, uint64_t> owner;
  auto diesAt = [&](const Value *v, size_t i) { return owner.count(v) && lastUse.lookup(v) == i; };

  for (size_t i = 0; i < ops.size(); ++i) {
    const Op &op = *ops[i];
    const Value *r = op.result();
    if (r) {
      uint64_t size = slotBytes(r);
      // 2a: in place over an operand that dies here.
      const Value *over = nullptr;
      for (const Value *c : inPlaceCandidates(op))
        if (!over && diesAt(c, i) && slotBytes(c) == size) over = c;
      uint64_t offset;
      if (over) {
        offset = owner[over];
        owner.erase(over);
      } else {
        // 2b: best fit among the gaps between live blocks, else on top.
        std::optional<uint64_t> best;
        uint64_t bestGap = 0, end = 0;
        for (auto [blockOffset, blockSize] : blocks) {
          uint64_t gap = blockOffset - end;
          if (gap >= size && (!best || gap < bestGap)) {
            best = end;
            bestGap = gap;
          }
          end = blockOffset + blockSize;
        }
        offset = best.value_or(end);
        blocks[offset] = size;
      }
      owner[r] = offset;
      plan.offsets[r] = offset;
      plan.bytes = std::max(plan.bytes, offset + size);
    }
    // 2c: release what dies here (operands, and a result nobody reads).
    auto release = [&](const Value *v) {
      if (!diesAt(v, i)) return;
      blocks.erase(owner[v]);
      owner.erase(v);
    };
    for (const Value *v : op.operands()) release(v);
    if (r) release(r);
  }
  return plan;
}

class PlanMemory : public Pass {
public:
  explicit PlanMemory(bool reuse) : reuse_(reuse) {}

  llvm::StringRef name() const override { return reuse_ ? "plan-memory" : "plan-memory-no-reuse"; }

  llvm::Expected<bool> run(Module &m) override {
    bool changed = false;
    uint64_t arena = 0;
    for (const auto &f : m.functions()) {
      // Every result gets a fresh offset, so a planned module is re-planned from scratch.
      FunctionPlan plan = planFunction(*f, reuse_);
      for (const auto &op : f->ops())
        if (Value *r = op->result()) {
          int64_t offset = int64_t(plan.offsets.lookup(r));
          changed |= r->arenaOffset() != offset;
          r->setArenaOffset(offset);
        }
      arena = std::max(arena, plan.bytes);
    }
    changed |= m.arenaBytes() != int64_t(arena);
    m.setArenaBytes(int64_t(arena));
    return changed;
  }

private:
  bool reuse_;
};

} // namespace

std::unique_ptr<Pass> createPlanMemoryPass(bool reuse) { return std::make_unique<PlanMemory>(reuse); }

MemoryPlanStats memoryPlanStats(const Module &m) {
  MemoryPlanStats stats;
  for (const auto &f : m.functions()) {
    uint64_t total = 0;
    for (const auto &op : f->ops())
      if (const Value *r = op->result()) {
        total += slotBytes(r);
        stats.largestValueBytes = std::max(stats.largestValueBytes, r->type().byteSize());
      }
    stats.unplannedBytes = std::max(stats.unplannedBytes, total);
  }
  stats.arenaBytes = m.arenaBytes() >= 0 ? uint64_t(m.arenaBytes()) : 0;
  return stats;
}

} // namespace llamac::passes
