#include "passes/FuseResidualAdd.h"

#include "ir/Builder.h"

namespace llamac::passes {

using namespace ir;

namespace {

/// The matmul producing operand `i` of `add`, when the add can absorb it:
/// a plain pure matmul whose result nothing else reads.
Op *fusibleMatMul(const Function &f, const Op &add, unsigned i) {
  Value *m = add.operand(i);
  Op *matmul = m->definingOp();
  if (!matmul || matmul->kind() != OpKind::MatMul || !matmul->isPure()) return nullptr;
  if (add.operand(1 - i) == m || f.isReturned(m)) return nullptr;
  llvm::SmallVector<Op *, 4> users = f.users(m);
  if (users.size() != 1) return nullptr;
  return matmul;
}

class FuseResidualAdd : public Pass {
public:
  llvm::StringRef name() const override { return "fuse-residual-add"; }

  llvm::Expected<bool> run(Module &m) override {
    bool changed = false;
    for (const auto &f : m.functions()) {
      auto changedHere = runOn(*f);
      if (!changedHere) return changedHere.takeError();
      changed |= *changedHere;
    }
    return changed;
  }

private:
  static llvm::Expected<bool> runOn(Function &f) {
    llvm::SmallVector<Op *, 16> adds;
    for (const auto &op : f.ops())
      if (op->kind() == OpKind::Add) adds.push_back(op.get());
    bool changed = false;
    for (Op *add : adds) {
      // Prefer the second operand: the frontend writes `add %x, %matmul`.
      unsigned matmulIndex = 1;
      Op *matmul = fusibleMatMul(f, *add, 1);
      if (!matmul) {
        matmulIndex = 0;
        matmul = fusibleMatMul(f, *add, 0);
      }
      if (!matmul) continue;
      Value *residual = add->operand(1 - matmulIndex);
      auto fused = Builder(f, add).create(OpKind::MatMulAdd, {matmul->operand(0), matmul->operand(1), residual},
                                          matmul->attrs());
      if (!fused) return fused.takeError();
      f.replaceAllUsesWith(add->result(), (*fused)->result());
      f.erase(add);
      f.erase(matmul);
      changed = true;
    }
    return changed;
  }
};

} // namespace

std::unique_ptr<Pass> createFuseResidualAddPass() { return std::make_unique<FuseResidualAdd>(); }

} // namespace llamac::passes
