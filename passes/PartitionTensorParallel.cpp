#include "passes/PartitionTensorParallel.h"

#include "ir/Builder.h"

#include "llvm/ADT/DenseMap.h"
#include "llvm/Support/FormatVariadic.h"

namespace llamac::passes {

using namespace ir;

namespace {

llvm::Error error(const llvm::Twine &msg) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), msg);
}

enum class Layout { Replicated, Split };

class Partitioner {
public:
  Partitioner(Module &m, int64_t ranks) : m_(m), ranks_(ranks) {}

  llvm::Error checkHeads(const Function &f) const;
  llvm::Error run(Function &f);

private:
  llvm::Error partition(Function &f, Op *op);
  llvm::Error splitByInput(Function &f, Op *op);
  llvm::Expected<Weight *> shard(Value *w, bool byRows, llvm::StringRef role);
  /// `v` on every rank: the all-gather of a Split value (made once, right
  /// after its definition), or `v` itself.
  llvm::Expected<Value *> replicated(Function &f, Value *v);
  Layout layoutOf(const Value *v) const { return layouts_.lookup(v); }
  /// Re-infers the type of `op`'s result after its operands changed.
  static llvm::Error retype(Op &op);
  static const Op *after(const Function &f, const Op *op) {
    size_t next = f.indexOf(op) + 1;
    return next < f.size() ? f.ops()[next].get() : nullptr;
  }

  Module &m_;
  int64_t ranks_;
  llvm::DenseMap<const Value *, Layout> layouts_; // absent: Replicated
  llvm::DenseMap<const Value *, Value *> gathered_;
  llvm::DenseMap<std::pair<const Value *, unsigned>, Weight *> shards_; // (weight, by rows)
};

llvm::Error Partitioner::retype(Op &op) {
  if (!op.result()) return llvm::Error::success();
  TensorType type;
  if (auto e = inferResultType(op, type)) return e;
  op.result()->setType(type);
  return llvm::Error::success();
}

llvm::Error Partitioner::checkHeads(const Function &f) const {
  for (const auto &op : f.ops()) {
    if (op->kind() != OpKind::Attention) continue;
    int64_t heads = op->intAttr(AttrKey::n_heads), kvHeads = op->intAttr(AttrKey::n_kv_heads);
    if (heads % ranks_ != 0 || kvHeads % ranks_ != 0)
      return error(llvm::formatv("cannot split layer {0}'s attention over {1} ranks: it has {2} query heads and {3} "
                                 "KV heads, and each rank takes whole heads, so {1} must divide both",
                                 op->intAttr(AttrKey::layer), ranks_, heads, kvHeads));
  }
  return llvm::Error::success();
}

/// What the rows of a row-split matmul's weights are, for messages.
llvm::StringRef rowRole(const Function &f, const Op &op) {
  switch (op.kind()) {
  case OpKind::MatMulSwiglu: return "FFN hidden units";
  case OpKind::MatMulArgMax: return "vocabulary entries";
  case OpKind::MatMulQkv:
  case OpKind::MatMulQkvRopeKv: return "attention rows";
  default: break;
  }
  if (f.isReturned(op.result())) return "vocabulary entries";
  for (const Op *user : f.users(op.result())) {
    if (user->kind() == OpKind::ArgMax) return "vocabulary entries";
    if (user->kind() == OpKind::SiluMul) return "FFN hidden units";
  }
  return "rows";
}

llvm::Expected<Weight *> Partitioner::shard(Value *v, bool byRows, llvm::StringRef role) {
  auto *w = llvm::cast<Weight>(v);
  Weight *&slot = shards_[{w, unsigned(byRows)}];
  if (slot) return slot;
  const TensorType &type = w->type();
  unsigned axis = byRows ? 0 : 1;
  if (type.rank() != 2 || type.shape[axis] % ranks_ != 0)
    return error(llvm::formatv("cannot split @{0} ({1}) by {2} over {3} ranks: its {4} {5} are not a multiple of {3} "
                               "(uneven shards are not supported)",
                               w->name(), type.str(), byRows ? "rows" : "columns", ranks_, type.shape[axis], role));
  Shape shape = type.shape;
  shape[axis] /= ranks_;
  slot = m_.addWeight(std::make_unique<Weight>(m_.uniqueWeightName(w->name() + (byRows ? ".rows" : ".cols")),
                                               TensorType(type.dtype, shape),
                                               byRows ? WeightExpr::ShardRows : WeightExpr::ShardColumns,
                                               llvm::SmallVector<Weight *, 2>{w}));
  return slot;
}

llvm::Expected<Value *> Partitioner::replicated(Function &f, Value *v) {
  if (layoutOf(v) == Layout::Replicated) return v;
  Value *&slot = gathered_[v];
  if (slot) return slot;
  auto gathered = Builder(f, after(f, v->definingOp()))
                      .value(OpKind::AllGather, {v}, {Attr::integer(AttrKey::ranks, ranks_)});
  if (!gathered) return gathered.takeError();
  slot = *gathered;
  return slot;
}

/// A matmul whose input is Split: each rank multiplies its columns of W by
/// its block of x, and the partial products are summed over the ranks.
llvm::Error Partitioner::splitByInput(Function &f, Op *op) {
  if (op->hasAttr(AttrKey::rms_eps))
    return error(op->mnemonic() + ": cannot normalize a split vector (its RMS needs every rank's block)");
  auto w = shard(op->operand(1), /*byRows=*/false, "input features");
  if (!w) return w.takeError();
  if (op->kind() == OpKind::MatMul) {
    op->setOperand(1, *w);
    if (auto e = retype(*op)) return e;
    auto sum = Builder(f, after(f, op)).create(OpKind::AllReduce, {op->result()});
    if (!sum) return sum.takeError();
    for (Op *user : f.users(op->result()))
      if (user != *sum)
        for (unsigned i = 0; i < user->operands().size(); ++i)
          if (user->operand(i) == op->result()) user->setOperand(i, (*sum)->result());
    llvm::SmallVector<Value *, 2> results(f.results().begin(), f.results().end());
    for (Value *&r : results)
      if (r == op->result()) r = (*sum)->result();
    f.setResults(results);
    return llvm::Error::success();
  }
  // matmul_add: only the sum of the partial products meets the residual.
  Value *residual = op->operand(2);
  if (layoutOf(residual) != Layout::Replicated)
    return error("matmul_add: cannot partition a residual add onto a split residual");
  Builder b(f, op);
  auto partial = b.value(OpKind::MatMul, {op->operand(0), *w});
  if (!partial) return partial.takeError();
  auto sum = b.value(OpKind::AllReduce, {*partial});
  if (!sum) return sum.takeError();
  auto added = b.value(OpKind::Add, {residual, *sum});
  if (!added) return added.takeError();
  f.replaceAllUsesWith(op->result(), *added);
  f.erase(op);
  return llvm::Error::success();
}

llvm::Error Partitioner::partition(Function &f, Op *op) {
  auto requireReplicated = [&](unsigned i) -> llvm::Error {
    auto v = replicated(f, op->operand(i));
    if (!v) return v.takeError();
    op->setOperand(i, *v);
    return llvm::Error::success();
  };
  Layout result = Layout::Replicated;
  switch (op->kind()) {
  case OpKind::Embedding: break;
  case OpKind::RmsNorm:
  case OpKind::RmsNormalize:
  case OpKind::ArgMax:
    if (auto e = requireReplicated(0)) return e;
    break;
  case OpKind::MatMul:
  case OpKind::MatMulAdd:
    if (layoutOf(op->operand(0)) == Layout::Split) return splitByInput(f, op);
    if (op->kind() == OpKind::MatMulAdd)
      return error("matmul_add: cannot partition a residual matmul whose input is replicated");
    [[fallthrough]];
  case OpKind::MatMulSwiglu:
  case OpKind::MatMulQkv:
  case OpKind::MatMulQkvRopeKv:
  case OpKind::MatMulArgMax:
    if (layoutOf(op->operand(0)) == Layout::Split)
      return error(op->mnemonic() + ": cannot partition a split input");
    for (unsigned i = 1; i < op->operands().size(); ++i) {
      if (!op->operand(i)->isWeight()) continue;
      auto w = shard(op->operand(i), /*byRows=*/true, rowRole(f, *op));
      if (!w) return w.takeError();
      op->setOperand(i, *w);
    }
    if (op->kind() == OpKind::MatMulArgMax) {
      Builder b(f, op);
      auto key = b.value(OpKind::MatMulArgMaxShard, {op->operand(0), op->operand(1)}, op->attrs());
      if (!key) return key.takeError();
      auto token = b.value(OpKind::ArgMaxReduce, {*key}, {Attr::integer(AttrKey::ranks, ranks_)});
      if (!token) return token.takeError();
      f.replaceAllUsesWith(op->result(), *token);
      f.erase(op);
      return llvm::Error::success();
    }
    result = Layout::Split;
    break;
  case OpKind::Rope: result = layoutOf(op->operand(0)); break;
  case OpKind::SiluMul:
  case OpKind::Add:
    // Elementwise: alike operands keep their layout; mixed ones meet replicated.
    if (layoutOf(op->operand(0)) != layoutOf(op->operand(1))) {
      if (auto e = requireReplicated(0)) return e;
      if (auto e = requireReplicated(1)) return e;
    } else {
      result = layoutOf(op->operand(0));
    }
    break;
  case OpKind::KvWrite:
  case OpKind::Attention:
    for (unsigned i = 0; i < (op->kind() == OpKind::KvWrite ? 2u : 1u); ++i)
      if (layoutOf(op->operand(i)) != Layout::Split)
        return error(op->mnemonic() + " of layer " + llvm::Twine(op->intAttr(AttrKey::layer)) +
                     ": its vectors do not come from head-split projections, so the KV cache cannot be split");
    if (op->kind() == OpKind::Attention) {
      op->setAttr(Attr::integer(AttrKey::n_heads, op->intAttr(AttrKey::n_heads) / ranks_));
      op->setAttr(Attr::integer(AttrKey::n_kv_heads, op->intAttr(AttrKey::n_kv_heads) / ranks_));
    }
    result = Layout::Split;
    break;
  case OpKind::Slice: {
    Value *x = op->operand(0);
    if (layoutOf(x) == Layout::Replicated) break;
    // A split matmul_qkv holds this rank's q, k and v blocks one after another.
    const Op *qkv = x->definingOp();
    bool isPart = false;
    if (qkv && qkv->kind() == OpKind::MatMulQkv) {
      int64_t offset = 0;
      for (unsigned i = 1; i <= 3; ++i) {
        int64_t size = qkv->operand(i)->type().shape[0] * ranks_;
        isPart |= op->intAttr(AttrKey::offset) == offset && op->intAttr(AttrKey::size) == size;
        offset += size;
      }
    }
    if (!isPart) return error("slice: cannot partition a slice of a split vector other than a q, k or v block");
    op->setAttr(Attr::integer(AttrKey::offset, op->intAttr(AttrKey::offset) / ranks_));
    op->setAttr(Attr::integer(AttrKey::size, op->intAttr(AttrKey::size) / ranks_));
    result = Layout::Split;
    break;
  }
  case OpKind::AllReduce:
  case OpKind::AllGather:
  case OpKind::MatMulArgMaxShard:
  case OpKind::ArgMaxReduce: return error(op->mnemonic() + ": the function is already partitioned");
  }
  if (auto e = retype(*op)) return e;
  if (op->result()) layouts_[op->result()] = result;
  return llvm::Error::success();
}

llvm::Error Partitioner::run(Function &f) {
  // Collected first: partitioning inserts and erases ops.
  std::vector<Op *> ops;
  for (const auto &op : f.ops()) ops.push_back(op.get());
  for (Op *op : ops)
    if (auto e = partition(f, op)) return error("@" + f.name() + ": " + llvm::toString(std::move(e)));
  llvm::SmallVector<Value *, 2> results;
  for (Value *r : f.results()) {
    auto v = replicated(f, r);
    if (!v) return v.takeError();
    results.push_back(*v);
  }
  f.setResults(results);
  return llvm::Error::success();
}

class PartitionTensorParallel : public Pass {
public:
  explicit PartitionTensorParallel(unsigned ranks) : ranks_(ranks) {}

  llvm::StringRef name() const override { return "partition-tp"; }

  llvm::Expected<bool> run(Module &m) override {
    if (ranks_ < 1) return error("tensor parallelism needs at least one rank");
    if (m.tensorParallel() != 0)
      return error(llvm::formatv("module @{0} is already partitioned for {1} ranks", m.name(), m.tensorParallel()));
    Partitioner partitioner(m, ranks_);
    for (const auto &f : m.functions())
      if (auto e = partitioner.checkHeads(*f)) return e;
    KvCacheSpec &kv = m.kvCache();
    if (kv.kvDim % ranks_ != 0)
      return error(llvm::formatv("cannot split the KV cache's kv_dim {0} over {1} ranks", kv.kvDim, ranks_));
    for (const auto &f : m.functions())
      if (auto e = partitioner.run(*f)) return e;
    kv.kvDim /= ranks_;
    m.setTensorParallel(ranks_);
    return true;
  }

private:
  unsigned ranks_;
};

} // namespace

std::unique_ptr<Pass> createPartitionTensorParallelPass(unsigned ranks) {
  return std::make_unique<PartitionTensorParallel>(ranks);
}

} // namespace llamac::passes
