#include "passes/Canonicalize.h"

#include "llvm/ADT/DenseMap.h"

namespace llamac::passes {

using namespace ir;

namespace {

bool isWholeSlice(const Op &op) {
  return op.kind() == OpKind::Slice && op.intAttr(AttrKey::offset) == 0 &&
         op.intAttr(AttrKey::size) == op.operand(0)->type().shape[0];
}

bool foldWholeSlices(Function &f) {
  llvm::SmallVector<Op *, 4> slices;
  for (const auto &op : f.ops())
    if (isWholeSlice(*op)) slices.push_back(op.get());
  for (Op *slice : slices) {
    f.replaceAllUsesWith(slice->result(), slice->operand(0));
    f.erase(slice);
  }
  return !slices.empty();
}

/// One backward walk erasing ops whose result is dead. Use counts are kept
/// up to date as ops go, so a chain of dead ops goes in the same walk.
bool eraseDeadOps(Function &f) {
  llvm::DenseMap<const Value *, unsigned> uses;
  for (const auto &op : f.ops())
    for (const Value *v : op->operands()) ++uses[v];
  for (const Value *r : f.results()) ++uses[r];
  bool changed = false;
  for (size_t i = f.size(); i-- > 0;) {
    Op *op = f.ops()[i].get();
    // Ops without a result (kv_write) and ops that write the KV cache
    // matter for what they leave in the cache, not for their value.
    if (!op->result() || op->writesKv() || uses.lookup(op->result()) != 0) continue;
    for (const Value *v : op->operands()) --uses[v];
    f.erase(op);
    changed = true;
  }
  return changed;
}

class Canonicalize : public Pass {
public:
  llvm::StringRef name() const override { return "canonicalize"; }

  llvm::Expected<bool> run(Module &m) override {
    bool changed = false;
    for (const auto &f : m.functions()) {
      changed |= foldWholeSlices(*f);
      while (eraseDeadOps(*f)) changed = true;
    }
    changed |= m.removeUnusedWeights() > 0;
    return changed;
  }
};

} // namespace

std::unique_ptr<Pass> createCanonicalizePass() { return std::make_unique<Canonicalize>(); }

} // namespace llamac::passes
