#include "passes/FuseClassifierArgmax.h"

#include "ir/Builder.h"

namespace llamac::passes {

using namespace ir;

namespace {

class FuseClassifierArgmax : public Pass {
public:
  llvm::StringRef name() const override { return "fuse-classifier-argmax"; }

  llvm::Expected<bool> run(Module &m) override {
    bool changed = false;
    for (const auto &f : m.functions()) {
      // Collected first: the rewrite erases ops from the list being walked.
      std::vector<Op *> argmaxes;
      for (const auto &op : f->ops())
        if (op->kind() == OpKind::ArgMax) argmaxes.push_back(op.get());
      for (Op *argmax : argmaxes) {
        // Step 1.
        Value *logits = argmax->operand(0);
        Op *classifier = logits->definingOp();
        if (!classifier || classifier->kind() != OpKind::MatMul || f->isReturned(logits) ||
            f->users(logits).size() != 1)
          continue;
        // Step 2.
        auto fused = Builder(*f, argmax).value(OpKind::MatMulArgMax,
                                               {classifier->operand(0), classifier->operand(1)},
                                               classifier->attrs());
        if (!fused) return fused.takeError();
        f->replaceAllUsesWith(argmax->result(), *fused);
        f->erase(argmax);
        f->erase(classifier);
        changed = true;
      }
    }
    return changed;
  }
};

} // namespace

std::unique_ptr<Pass> createFuseClassifierArgmaxPass() { return std::make_unique<FuseClassifierArgmax>(); }

} // namespace llamac::passes
