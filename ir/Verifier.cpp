#include "ir/Verifier.h"

#include "llvm/ADT/SmallPtrSet.h"
#include "llvm/Support/FormatVariadic.h"

#include <set>

namespace llamac::ir {

namespace {

llvm::Error error(const llvm::Twine &msg) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), msg);
}

llvm::Error verifyWeight(const Module &m, const Weight &w) {
  auto fail = [&](const llvm::Twine &what) { return error("weight @" + w.name() + ": " + what); };
  if (w.type().numElements() <= 0) return fail("has no elements");
  for (Weight *operand : w.operands())
    if (m.weight(operand->name()) != operand) return fail("uses @" + operand->name() + ", which is not in the module");
  switch (w.expr()) {
  case WeightExpr::File:
    if (!w.operands().empty()) return fail("a file weight takes no operands");
    return llvm::Error::success();
  case WeightExpr::ScaleColumns: {
    if (w.operands().size() != 2) return fail("scale_columns takes (matrix, vector)");
    const TensorType &mat = w.operands()[0]->type(), &vec = w.operands()[1]->type();
    if (mat.rank() != 2 || vec.rank() != 1 || mat.shape[1] != vec.shape[0])
      return fail("scale_columns needs a [N][K] matrix and a [K] vector, got " + mat.str() + " and " + vec.str());
    if (w.type().shape != mat.shape) return fail("scale_columns keeps its matrix's shape");
    return llvm::Error::success();
  }
  case WeightExpr::Convert:
    if (w.operands().size() != 1 || w.operands()[0]->type().shape != w.type().shape)
      return fail("convert takes one weight of the same shape");
    if (!isFloat(w.type().dtype) || !isFloat(w.operands()[0]->type().dtype))
      return fail("convert converts between float dtypes");
    return llvm::Error::success();
  case WeightExpr::ShardRows:
  case WeightExpr::ShardColumns: {
    bool rows = w.expr() == WeightExpr::ShardRows;
    if (m.tensorParallel() < 1) return fail(toString(w.expr()) + " needs a module partitioned by tensor_parallel");
    if (w.operands().size() != 1) return fail(toString(w.expr()) + " takes one weight");
    const TensorType &whole = w.operands()[0]->type();
    Shape expected = whole.shape;
    unsigned axis = rows ? 0 : 1;
    if (whole.rank() != 2 || expected[axis] % m.tensorParallel() != 0)
      return fail(llvm::formatv("{0} needs a matrix whose {1} split into {2} equal shards, got {3}", toString(w.expr()),
                                rows ? "rows" : "columns", m.tensorParallel(), whole.str())
                      .str());
    expected[axis] /= m.tensorParallel();
    if (!(w.type() == TensorType(whole.dtype, expected)))
      return fail(llvm::formatv("{0} of {1} over {2} ranks is {3}, not {4}", toString(w.expr()), whole.str(),
                                m.tensorParallel(), TensorType(whole.dtype, expected).str(), w.type().str())
                      .str());
    return llvm::Error::success();
  }
  }
  return llvm::Error::success();
}

llvm::Error verifyKvAccess(const Module &m, const Op &op) {
  const KvCacheSpec &kv = m.kvCache();
  int64_t layer = op.intAttr(AttrKey::layer);
  if (layer < 0 || layer >= kv.layers)
    return error(llvm::formatv("{0}: layer {1} is outside the KV cache's {2} layers", op.mnemonic(), layer, kv.layers));
  int64_t kvDim = 0;
  switch (op.kind()) {
  case OpKind::KvWrite: kvDim = op.operand(0)->type().shape[0]; break;
  case OpKind::MatMulQkvRopeKv: kvDim = op.operand(2)->type().shape[0]; break;
  case OpKind::Attention:
    kvDim = op.intAttr(AttrKey::n_kv_heads) * op.intAttr(AttrKey::head_size);
    break;
  default: return llvm::Error::success();
  }
  if (kvDim != kv.kvDim)
    return error(llvm::formatv("{0}: writes or reads {1} elements per position, the KV cache holds {2}", op.mnemonic(),
                               kvDim, kv.kvDim));
  return llvm::Error::success();
}

/// Collectives exist only in a partitioned module, over all of its ranks.
llvm::Error verifyCollective(const Module &m, const Op &op) {
  switch (op.kind()) {
  case OpKind::AllReduce:
  case OpKind::AllGather:
  case OpKind::MatMulArgMaxShard:
  case OpKind::ArgMaxReduce: break;
  default: return llvm::Error::success();
  }
  if (m.tensorParallel() < 1) return error("a tensor parallel op in a module without 'tensor_parallel N'");
  if (op.hasAttr(AttrKey::ranks) && op.intAttr(AttrKey::ranks) != m.tensorParallel())
    return error(llvm::formatv("spans {0} ranks, the module is partitioned for {1}", op.intAttr(AttrKey::ranks),
                               m.tensorParallel()));
  return llvm::Error::success();
}

llvm::Error verifyFunction(const Module &m, const Function &f) {
  ValueNumbering names(f);
  llvm::SmallPtrSet<const Value *, 32> defined;
  std::set<int64_t> kvWritten;
  for (const auto &arg : f.arguments()) defined.insert(arg.get());
  auto fail = [&](const Op &op, const llvm::Twine &what) {
    return error("in @" + f.name() + ", op " + llvm::Twine(f.indexOf(&op)) + " (" + op.mnemonic() + "): " + what);
  };
  for (const auto &op : f.ops()) {
    if (op->parent() != &f) return fail(*op, "its parent is another function");
    for (Value *v : op->operands()) {
      if (auto *w = llvm::dyn_cast<Weight>(v)) {
        if (m.weight(w->name()) != w) return fail(*op, "uses weight @" + w->name() + ", which is not in the module");
      } else if (!defined.count(v)) {
        std::string which = v->definingOp() && v->definingOp()->parent() == &f ? names.name(v) : v->describe();
        return fail(*op, "uses " + which + " before it is defined");
      }
    }
    TensorType inferred;
    if (auto e = inferResultType(*op, inferred)) return fail(*op, llvm::toString(std::move(e)));
    if (auto e = verifyCollective(m, *op)) return fail(*op, llvm::toString(std::move(e)));
    if (op->info().numResults == 1) {
      if (!op->result()) return fail(*op, "has no result");
      if (!(op->result()->type() == inferred))
        return fail(*op, "result type " + op->result()->type().str() + " differs from the inferred " + inferred.str());
      defined.insert(op->result());
    }
    if (!op->isPure()) {
      if (auto e = verifyKvAccess(m, *op)) return fail(*op, llvm::toString(std::move(e)));
      // Attention reads the position this step writes: the layer's KV write
      // must come first.
      int64_t layer = op->intAttr(AttrKey::layer);
      if (op->writesKv()) kvWritten.insert(layer);
      else if (op->readsKv() && !kvWritten.count(layer))
        return fail(*op, "reads layer " + llvm::Twine(layer) + " of the KV cache before this step writes it");
    }
    if (m.arenaBytes() < 0 && op->result() && op->result()->arenaOffset() >= 0)
      return fail(*op, names.name(op->result()) + " has an arena offset but the module has no arena");
  }
  if (f.results().empty()) return error("@" + f.name() + " returns nothing");
  for (Value *r : f.results())
    if (!defined.count(r)) return error("@" + f.name() + " returns a value it does not define (" + r->describe() + ")");

  if (m.arenaBytes() >= 0) {
    for (const auto &op : f.ops()) {
      const Value *r = op->result();
      if (!r) continue;
      if (r->arenaOffset() < 0) return fail(*op, "the module is memory-planned but " + names.name(r) + " has no offset");
      if (uint64_t(r->arenaOffset()) + r->type().byteSize() > uint64_t(m.arenaBytes()))
        return fail(*op, names.name(r) + " ends past the arena's " + llvm::Twine(m.arenaBytes()) + " bytes");
    }
  }
  return llvm::Error::success();
}

} // namespace

llvm::Error verify(const Module &m) {
  for (const auto &w : m.weights())
    if (auto e = verifyWeight(m, *w)) return e;
  if (m.functions().empty()) return error("module @" + m.name() + " has no functions");
  for (const auto &f : m.functions())
    if (auto e = verifyFunction(m, *f)) return e;
  return llvm::Error::success();
}

} // namespace llamac::ir
