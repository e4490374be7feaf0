#include "passes/FuseSwiGlu.h"

#include "ir/Builder.h"

#include <optional>

namespace llamac::passes {

using namespace ir;

namespace {

std::optional<double> rmsEps(const Op &op) {
  if (!op.hasAttr(AttrKey::rms_eps)) return std::nullopt;
  return op.floatAttr(AttrKey::rms_eps);
}

/// The matmul computing `v` when `user` is the only thing that reads it.
Op *matmulOnlyUsedBy(const Function &f, const Value *v, const Op *user) {
  Op *def = v->definingOp();
  if (!def || def->kind() != OpKind::MatMul || f.isReturned(v)) return nullptr;
  auto users = f.users(v);
  if (users.size() != 1 || users[0] != user) return nullptr;
  return def;
}

class FuseSwiGlu : public Pass {
public:
  llvm::StringRef name() const override { return "fuse-swiglu"; }

  llvm::Expected<bool> run(Module &m) override {
    bool changed = false;
    for (const auto &f : m.functions()) {
      // Collected first: the rewrite erases ops from the list being walked.
      std::vector<Op *> siluMuls;
      for (const auto &op : f->ops())
        if (op->kind() == OpKind::SiluMul) siluMuls.push_back(op.get());
      for (Op *siluMul : siluMuls) {
        // Step 1 and 2.
        Op *gate = matmulOnlyUsedBy(*f, siluMul->operand(0), siluMul);
        Op *up = matmulOnlyUsedBy(*f, siluMul->operand(1), siluMul);
        if (!gate || !up || gate == up) continue;
        if (gate->operand(0) != up->operand(0) || rmsEps(*gate) != rmsEps(*up)) continue;
        // Step 3.
        llvm::SmallVector<Attr, 1> attrs;
        if (auto eps = rmsEps(*gate)) attrs.push_back(Attr::real(AttrKey::rms_eps, *eps));
        auto fused = Builder(*f, siluMul)
                         .value(OpKind::MatMulSwiglu, {gate->operand(0), gate->operand(1), up->operand(1)}, attrs);
        if (!fused) return fused.takeError();
        f->replaceAllUsesWith(siluMul->result(), *fused);
        f->erase(siluMul);
        f->erase(gate);
        f->erase(up);
        changed = true;
      }
    }
    return changed;
  }
};

} // namespace

std::unique_ptr<Pass> createFuseSwiGluPass() { return std::make_unique<FuseSwiGlu>(); }

} // namespace llamac::passes
