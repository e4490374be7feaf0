#include "ir/IR.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/SmallPtrSet.h"

#include <cassert>

namespace llamac::ir {

std::string Value::describe() const {
  switch (kind_) {
  case Kind::Argument: return "%" + name_ + " : " + type_.str();
  case Kind::Weight: return "@" + name_ + " : " + type_.str();
  case Kind::Result:
    return "%<" + (definingOp_ ? definingOp_->mnemonic().str() : std::string("?")) +
           " result> : " + type_.str();
  }
  return "?";
}

llvm::StringRef toString(WeightExpr expr) {
  switch (expr) {
  case WeightExpr::File: return "file";
  case WeightExpr::ScaleColumns: return "scale_columns";
  case WeightExpr::Convert: return "convert";
  case WeightExpr::ShardRows: return "shard_rows";
  case WeightExpr::ShardColumns: return "shard_cols";
  }
  return "?";
}

//===----------------------------------------------------------------------===//
// Op
//===----------------------------------------------------------------------===//

void Op::setResult(TensorType type) {
  assert(info().numResults == 1 && "op kind has no result");
  result_ = std::make_unique<Value>(Value::Kind::Result, std::move(type));
  result_->definingOp_ = this;
}

bool Op::hasAttr(AttrKey key) const {
  return llvm::any_of(attrs_, [&](const Attr &a) { return a.key == key; });
}

int64_t Op::intAttr(AttrKey key) const {
  for (const Attr &a : attrs_)
    if (a.key == key) return a.intValue;
  assert(false && "missing integer attribute (the verifier should have caught this)");
  return 0;
}

double Op::floatAttr(AttrKey key) const {
  for (const Attr &a : attrs_)
    if (a.key == key) return a.floatValue;
  assert(false && "missing float attribute (the verifier should have caught this)");
  return 0;
}

void Op::setAttr(Attr attr) {
  for (Attr &a : attrs_)
    if (a.key == attr.key) {
      a = attr;
      return;
    }
  attrs_.push_back(attr);
  // Keep attributes in the table's order so printing is deterministic.
  llvm::sort(attrs_, [](const Attr &a, const Attr &b) { return a.key < b.key; });
}

void Op::removeAttr(AttrKey key) {
  llvm::erase_if(attrs_, [&](const Attr &a) { return a.key == key; });
}

//===----------------------------------------------------------------------===//
// Function
//===----------------------------------------------------------------------===//

Value *Function::addArgument(std::string name, TensorType type) {
  arguments_.push_back(std::make_unique<Value>(Value::Kind::Argument, std::move(type)));
  arguments_.back()->setName(std::move(name));
  return arguments_.back().get();
}

Value *Function::argument(llvm::StringRef name) const {
  for (const auto &a : arguments_)
    if (a->name() == name) return a.get();
  return nullptr;
}

size_t Function::indexOf(const Op *op) const {
  for (size_t i = 0; i < ops_.size(); ++i)
    if (ops_[i].get() == op) return i;
  assert(false && "op is not in this function");
  return ops_.size();
}

Op *Function::insert(std::unique_ptr<Op> op, const Op *before) {
  op->parent_ = this;
  Op *raw = op.get();
  if (!before)
    ops_.push_back(std::move(op));
  else
    ops_.insert(ops_.begin() + indexOf(before), std::move(op));
  return raw;
}

void Function::erase(Op *op) {
  assert((!op->result() || !hasUses(op->result())) && "erasing an op whose result is still used");
  ops_.erase(ops_.begin() + indexOf(op));
}

llvm::SmallVector<Op *, 4> Function::users(const Value *v) const {
  llvm::SmallVector<Op *, 4> result;
  for (const auto &op : ops_)
    if (llvm::is_contained(op->operands(), v)) result.push_back(op.get());
  return result;
}

bool Function::isReturned(const Value *v) const { return llvm::is_contained(results_, v); }

void Function::replaceAllUsesWith(Value *from, Value *to) {
  assert(from->type() == to->type() && "replacing a value with one of another type");
  for (const auto &op : ops_)
    for (unsigned i = 0; i < op->operands().size(); ++i)
      if (op->operand(i) == from) op->setOperand(i, to);
  for (Value *&r : results_)
    if (r == from) r = to;
}

//===----------------------------------------------------------------------===//
// Module
//===----------------------------------------------------------------------===//

Weight *Module::addWeight(std::unique_ptr<Weight> weight) {
  assert(!weightsByName_.count(weight->name()) && "duplicate weight name");
  Weight *raw = weight.get();
  weightsByName_[raw->name()] = raw;
  weights_.push_back(std::move(weight));
  return raw;
}

Weight *Module::weight(llvm::StringRef name) const { return weightsByName_.lookup(name); }

std::string Module::uniqueWeightName(llvm::StringRef base) const {
  if (!weightsByName_.count(base)) return base.str();
  for (unsigned i = 1;; ++i) {
    std::string candidate = (base + "." + llvm::Twine(i)).str();
    if (!weightsByName_.count(candidate)) return candidate;
  }
}

unsigned Module::removeUnusedWeights() {
  llvm::SmallPtrSet<const Weight *, 32> used;
  std::vector<const Weight *> work;
  for (const auto &f : functions_)
    for (const auto &op : f->ops())
      for (Value *v : op->operands())
        if (auto *w = llvm::dyn_cast<Weight>(v)) work.push_back(w);
  while (!work.empty()) {
    const Weight *w = work.back();
    work.pop_back();
    if (!used.insert(w).second) continue;
    for (Weight *operand : w->operands()) work.push_back(operand);
  }
  unsigned before = weights_.size();
  llvm::erase_if(weights_, [&](const std::unique_ptr<Weight> &w) {
    if (used.count(w.get())) return false;
    weightsByName_.erase(w->name());
    return true;
  });
  return before - weights_.size();
}

Function *Module::addFunction(std::string name) {
  functions_.push_back(std::make_unique<Function>(std::move(name)));
  return functions_.back().get();
}

Function *Module::function(llvm::StringRef name) const {
  for (const auto &f : functions_)
    if (f->name() == name) return f.get();
  return nullptr;
}

//===----------------------------------------------------------------------===//
// ValueNumbering
//===----------------------------------------------------------------------===//

ValueNumbering::ValueNumbering(const Function &f) {
  unsigned next = 0;
  for (const auto &op : f.ops())
    if (op->result()) numbers_[op->result()] = next++;
}

std::string ValueNumbering::name(const Value *v) const {
  if (v->isWeight()) return "@" + v->name();
  if (v->isArgument()) return "%" + v->name();
  auto it = numbers_.find(v);
  assert(it != numbers_.end() && "value not defined in this function");
  return "%" + std::to_string(it->second);
}

} // namespace llamac::ir
