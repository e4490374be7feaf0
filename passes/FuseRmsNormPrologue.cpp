#include "passes/FuseRmsNormPrologue.h"

#include "llvm/ADT/STLExtras.h"

namespace llamac::passes {

using namespace ir;

namespace {

/// Whether `user` reads `y` only as its input vector and does not normalize
/// it already (normalizing twice is not normalizing once).
bool canNormalizeItsInput(const Op &user, const Value *y) {
  if (!takesRmsPrologue(user.kind()) || user.hasAttr(AttrKey::rms_eps) || user.operand(0) != y) return false;
  return !llvm::is_contained(user.operands().drop_front(), y);
}

class FuseRmsNormPrologue : public Pass {
public:
  llvm::StringRef name() const override { return "fuse-rmsnorm-prologue"; }

  llvm::Expected<bool> run(Module &m) override {
    bool changed = false;
    for (const auto &f : m.functions()) changed |= runOn(*f);
    return changed;
  }

private:
  static bool runOn(Function &f) {
    llvm::SmallVector<Op *, 16> normalizes;
    for (const auto &op : f.ops())
      if (op->kind() == OpKind::RmsNormalize) normalizes.push_back(op.get());
    bool changed = false;
    for (Op *normalize : normalizes) {
      Value *x = normalize->operand(0), *y = normalize->result();
      llvm::SmallVector<Op *, 4> users = f.users(y);
      if (users.empty() || f.isReturned(y) ||
          !llvm::all_of(users, [&](const Op *u) { return canNormalizeItsInput(*u, y); }))
        continue;
      Attr eps = Attr::real(AttrKey::rms_eps, normalize->floatAttr(AttrKey::eps));
      for (Op *user : users) {
        user->setAttr(eps);
        user->setOperand(0, x);
      }
      f.erase(normalize);
      changed = true;
    }
    return changed;
  }
};

} // namespace

std::unique_ptr<Pass> createFuseRmsNormProloguePass() { return std::make_unique<FuseRmsNormPrologue>(); }

} // namespace llamac::passes
