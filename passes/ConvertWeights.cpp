#include "passes/ConvertWeights.h"

#include "llvm/ADT/DenseMap.h"

namespace llamac::passes {

using namespace ir;

namespace {

/// The operand indices of `op` that are weight matrices read row by row.
std::pair<unsigned, unsigned> matrixOperands(const Op &op) {
  switch (op.kind()) {
  case OpKind::Embedding: return {0, 1};
  case OpKind::MatMul:
  case OpKind::MatMulAdd:
  case OpKind::MatMulArgMax:
  case OpKind::MatMulArgMaxShard: return {1, 2};
  case OpKind::MatMulSwiglu: return {1, 3};
  case OpKind::MatMulQkv:
  case OpKind::MatMulQkvRopeKv: return {1, 4};
  default: return {0, 0};
  }
}

class ConvertWeights : public Pass {
public:
  explicit ConvertWeights(DType dtype) : dtype_(dtype) {}

  llvm::StringRef name() const override { return "convert-weights"; }

  llvm::Expected<bool> run(Module &m) override {
    if (dtype_ == DType::f32) return false;
    llvm::DenseMap<Weight *, Weight *> converted;
    bool changed = false;
    for (const auto &f : m.functions())
      for (const auto &op : f->ops()) {
        auto [begin, end] = matrixOperands(*op);
        for (unsigned i = begin; i < end; ++i) {
          auto *w = llvm::dyn_cast<Weight>(op->operand(i));
          if (!w || w->type().dtype == dtype_) continue;
          Weight *&to = converted[w];
          if (!to) {
            std::string name = m.uniqueWeightName(w->name() + "." + toString(dtype_).str());
            to = m.addWeight(std::make_unique<Weight>(name, TensorType(dtype_, w->type().shape), WeightExpr::Convert,
                                                      llvm::SmallVector<Weight *, 2>{w}));
          }
          op->setOperand(i, to);
          changed = true;
        }
      }
    return changed;
  }

private:
  DType dtype_;
};

} // namespace

std::unique_ptr<Pass> createConvertWeightsPass(DType dtype) { return std::make_unique<ConvertWeights>(dtype); }

} // namespace llamac::passes
