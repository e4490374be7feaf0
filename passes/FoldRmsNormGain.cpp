#include "passes/FoldRmsNormGain.h"

#include "ir/Builder.h"

#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/STLExtras.h"

namespace llamac::passes {

using namespace ir;

namespace {

/// Whether `user` reads `y` only as the input vector of a plain matmul, so
/// that scaling its weights' columns by `gain` computes the same thing.
bool consumesAsMatMulInput(const Op &user, const Value *y, const Weight &gain) {
  if (!takesRmsPrologue(user.kind()) || user.hasAttr(AttrKey::rms_eps) || user.operand(0) != y) return false;
  for (unsigned i = 1; i < user.operands().size(); ++i) {
    const Value *v = user.operand(i);
    if (v == y) return false; // also a residual or some other operand
    if (v->isWeight() && (v->type().rank() != 2 || v->type().shape[1] != gain.type().shape[0])) return false;
  }
  return true;
}

class FoldRmsNormGain : public Pass {
public:
  llvm::StringRef name() const override { return "fold-rmsnorm-gain"; }

  llvm::Expected<bool> run(Module &m) override {
    // Reuse folded weights the module already has, so running twice or on a
    // partly folded module never duplicates one.
    for (const auto &w : m.weights())
      if (w->expr() == WeightExpr::ScaleColumns) folded_[{w->operands()[0], w->operands()[1]}] = w.get();
    bool changed = false;
    for (const auto &f : m.functions()) {
      auto changedHere = runOn(m, *f);
      if (!changedHere) return changedHere.takeError();
      changed |= *changedHere;
    }
    folded_.clear();
    return changed;
  }

private:
  llvm::Expected<bool> runOn(Module &m, Function &f) {
    llvm::SmallVector<Op *, 16> norms;
    for (const auto &op : f.ops())
      if (op->kind() == OpKind::RmsNorm) norms.push_back(op.get());
    bool changed = false;
    for (Op *norm : norms) {
      Value *y = norm->result();
      auto *gain = llvm::cast<Weight>(norm->operand(1));
      llvm::SmallVector<Op *, 4> users = f.users(y);
      if (users.empty() || f.isReturned(y) ||
          !llvm::all_of(users, [&](const Op *u) { return consumesAsMatMulInput(*u, y, *gain); }))
        continue;

      for (Op *user : users)
        for (unsigned i = 1; i < user->operands().size(); ++i)
          if (auto *w = llvm::dyn_cast<Weight>(user->operand(i))) user->setOperand(i, foldedWeight(m, w, gain));

      auto normalized = Builder(f, norm).value(OpKind::RmsNormalize, {norm->operand(0)},
                                               {Attr::real(AttrKey::eps, norm->floatAttr(AttrKey::eps))});
      if (!normalized) return normalized.takeError();
      f.replaceAllUsesWith(y, *normalized);
      f.erase(norm);
      changed = true;
    }
    return changed;
  }

  /// `@<w>.g = scale_columns(@w, @gain)`, made on first request.
  Weight *foldedWeight(Module &m, Weight *w, Weight *gain) {
    Weight *&slot = folded_[{w, gain}];
    if (!slot)
      slot = m.addWeight(std::make_unique<Weight>(m.uniqueWeightName(w->name() + ".g"), w->type(),
                                                  WeightExpr::ScaleColumns, llvm::SmallVector<Weight *, 2>{w, gain}));
    return slot;
  }

  llvm::DenseMap<std::pair<const Weight *, const Weight *>, Weight *> folded_;
};

} // namespace

std::unique_ptr<Pass> createFoldRmsNormGainPass() { return std::make_unique<FoldRmsNormGain>(); }

} // namespace llamac::passes
