#include "passes/MergeQkv.h"

#include "ir/Builder.h"

#include "llvm/ADT/STLExtras.h"

#include <array>
#include <optional>

namespace llamac::passes {

using namespace ir;

namespace {

/// What makes matmuls mergeable: the same input, normalized the same way.
struct InputKey {
  Value *input;
  std::optional<double> rmsEps;
  bool operator==(const InputKey &o) const { return input == o.input && rmsEps == o.rmsEps; }
};

InputKey keyOf(const Op &matmul) {
  std::optional<double> eps;
  if (matmul.hasAttr(AttrKey::rms_eps)) eps = matmul.floatAttr(AttrKey::rms_eps);
  return {matmul.operand(0), eps};
}

int64_t rows(const Op &matmul) { return matmul.operand(1)->type().shape[0]; }

/// Replaces q, k and v (in op order) by one matmul_qkv and three slices.
llvm::Error merge(Function &f, Op *q, Op *k, Op *v) {
  Builder b(f, q);
  llvm::SmallVector<Attr, 1> attrs;
  if (q->hasAttr(AttrKey::rms_eps)) attrs.push_back(Attr::real(AttrKey::rms_eps, q->floatAttr(AttrKey::rms_eps)));
  auto qkv = b.value(OpKind::MatMulQkv, {q->operand(0), q->operand(1), k->operand(1), v->operand(1)}, attrs);
  if (!qkv) return qkv.takeError();
  int64_t offset = 0;
  for (Op *projection : {q, k, v}) {
    int64_t size = rows(*projection);
    auto slice = b.value(OpKind::Slice, {*qkv},
                         {Attr::integer(AttrKey::offset, offset), Attr::integer(AttrKey::size, size)});
    if (!slice) return slice.takeError();
    f.replaceAllUsesWith(projection->result(), *slice);
    offset += size;
  }
  for (Op *projection : {q, k, v}) f.erase(projection);
  return llvm::Error::success();
}

class MergeQkv : public Pass {
public:
  llvm::StringRef name() const override { return "merge-qkv"; }

  llvm::Expected<bool> run(Module &m) override {
    bool changed = false;
    for (const auto &f : m.functions()) {
      // Step 1. A linear search over keys keeps groups in the order their
      // first matmul appears; a function holds a few dozen groups at most.
      std::vector<std::pair<InputKey, llvm::SmallVector<Op *, 3>>> groups;
      for (const auto &op : f->ops()) {
        if (op->kind() != OpKind::MatMul) continue;
        InputKey key = keyOf(*op);
        auto it = llvm::find_if(groups, [&](const auto &g) { return g.first == key; });
        if (it == groups.end()) {
          groups.push_back({key, {}});
          it = std::prev(groups.end());
        }
        it->second.push_back(op.get());
      }
      // Step 2. Choose every triple before rewriting: the rewrite erases ops.
      std::vector<std::array<Op *, 3>> triples;
      for (const auto &[key, matmuls] : groups)
        for (size_t i = 0; i + 2 < matmuls.size();) {
          if (rows(*matmuls[i + 1]) == rows(*matmuls[i + 2])) {
            triples.push_back({matmuls[i], matmuls[i + 1], matmuls[i + 2]});
            i += 3;
          } else {
            ++i;
          }
        }
      // Steps 3 and 4.
      for (const auto &[q, k, v] : triples) {
        if (auto e = merge(*f, q, k, v)) return e;
        changed = true;
      }
    }
    return changed;
  }
};

} // namespace

std::unique_ptr<Pass> createMergeQkvPass() { return std::make_unique<MergeQkv>(); }

} // namespace llamac::passes
