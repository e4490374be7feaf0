//===- ir/IR.h - Values, ops, functions and modules -------------*- C++ -*-===//
//
// A Module holds the model's weights (module-level constants that point into
// a weights file instead of holding bytes), the KV cache's shape, and one or
// more functions over typed SSA values. A Function is a straight-line list of
// ops: Llama decode has no control flow. Ops that touch the KV cache are
// ordered by their position in that list; passes never move them past one
// another.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "ir/Ops.h"
#include "ir/Types.h"

#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/Support/Casting.h"
#include "llvm/Support/Error.h"

#include <memory>
#include <string>
#include <vector>

namespace llamac::ir {

class Function;
class Module;
class Op;
class Weight;

class Value {
public:
  enum class Kind : uint8_t { Argument, Weight, Result };

  Value(Kind kind, TensorType type) : kind_(kind), type_(std::move(type)) {}
  virtual ~Value() = default;
  Value(const Value &) = delete;
  Value &operator=(const Value &) = delete;

  Kind kind() const { return kind_; }
  const TensorType &type() const { return type_; }
  void setType(TensorType type) { type_ = std::move(type); }
  bool isWeight() const { return kind_ == Kind::Weight; }
  bool isArgument() const { return kind_ == Kind::Argument; }
  /// The op computing this value, or null for arguments and weights.
  Op *definingOp() const { return definingOp_; }

  /// Arguments and weights have names; results are numbered when printed.
  const std::string &name() const { return name_; }
  void setName(std::string name) { name_ = std::move(name); }

  /// Byte offset in the activation arena, set by memory planning; -1 before.
  int64_t arenaOffset() const { return arenaOffset_; }
  void setArenaOffset(int64_t offset) { arenaOffset_ = offset; }

  /// Short form for messages: `%name`, `@weight` or `%<op>` with its type.
  std::string describe() const;

private:
  friend class Op;
  Kind kind_;
  TensorType type_;
  std::string name_;
  Op *definingOp_ = nullptr;
  int64_t arenaOffset_ = -1;
};

/// How a weight's bytes are obtained: read from the module's weights file, or
/// computed at compile time from other weights (passes fold RMSNorm gains into
/// matmul columns and convert dtypes this way).
enum class WeightExpr : uint8_t {
  File,         // bytes at `fileOffset` in the weights file
  ScaleColumns, // W'[n][k] = W[n][k] * g[k]            operands (W, g)
  Convert,      // W converted to this weight's dtype   operands (W)
  // Tensor parallelism: this rank's block of W, of a module partitioned for
  // N ranks. Rank r of N holds rows [r * R, (r + 1) * R) (R = rows(W) / N),
  // or likewise columns; the shard's type is its shape on one rank.
  ShardRows,    // W[r * R : (r + 1) * R][:]           operands (W)
  ShardColumns, // W[:][r * C : (r + 1) * C]           operands (W)
};
llvm::StringRef toString(WeightExpr expr);

class Weight : public Value {
public:
  Weight(std::string name, TensorType type, uint64_t fileOffset)
      : Value(Kind::Weight, std::move(type)), fileOffset_(fileOffset) {
    setName(std::move(name));
  }
  Weight(std::string name, TensorType type, WeightExpr expr,
         llvm::SmallVector<Weight *, 2> operands)
      : Value(Kind::Weight, std::move(type)), expr_(expr), operands_(std::move(operands)) {
    setName(std::move(name));
  }

  WeightExpr expr() const { return expr_; }
  uint64_t fileOffset() const { return fileOffset_; }
  llvm::ArrayRef<Weight *> operands() const { return operands_; }
  /// After compilation every weight is re-pointed into the plan's weights file.
  void setFileOffset(uint64_t offset) {
    expr_ = WeightExpr::File;
    fileOffset_ = offset;
    operands_.clear();
  }

  static bool classof(const Value *v) { return v->isWeight(); }

private:
  WeightExpr expr_ = WeightExpr::File;
  uint64_t fileOffset_ = 0;
  llvm::SmallVector<Weight *, 2> operands_;
};

class Op {
public:
  Op(OpKind kind, llvm::ArrayRef<Value *> operands, llvm::ArrayRef<Attr> attrs)
      : kind_(kind), operands_(operands.begin(), operands.end()) {
    for (const Attr &a : attrs) setAttr(a);
  }

  OpKind kind() const { return kind_; }
  const OpInfo &info() const { return opInfo(kind_); }
  llvm::StringRef mnemonic() const { return info().mnemonic; }
  Function *parent() const { return parent_; }

  llvm::ArrayRef<Value *> operands() const { return operands_; }
  Value *operand(unsigned i) const { return operands_[i]; }
  void setOperand(unsigned i, Value *v) { operands_[i] = v; }

  /// The single result, or null for ops with none (kv_write).
  Value *result() const { return result_.get(); }
  void setResult(TensorType type);

  llvm::ArrayRef<Attr> attrs() const { return attrs_; }
  bool hasAttr(AttrKey key) const;
  int64_t intAttr(AttrKey key) const;
  double floatAttr(AttrKey key) const;
  void setAttr(Attr attr);
  void removeAttr(AttrKey key);

  bool writesKv() const { return info().effects == Effects::WritesKv; }
  bool readsKv() const { return info().effects == Effects::ReadsKv; }
  bool isPure() const { return info().effects == Effects::Pure; }

private:
  friend class Function;
  OpKind kind_;
  llvm::SmallVector<Value *, 5> operands_;
  llvm::SmallVector<Attr, 4> attrs_;
  std::unique_ptr<Value> result_;
  Function *parent_ = nullptr;
};

class Function {
public:
  using OpList = std::vector<std::unique_ptr<Op>>;

  explicit Function(std::string name) : name_(std::move(name)) {}

  const std::string &name() const { return name_; }

  Value *addArgument(std::string name, TensorType type);
  llvm::ArrayRef<std::unique_ptr<Value>> arguments() const { return arguments_; }
  Value *argument(llvm::StringRef name) const;

  const OpList &ops() const { return ops_; }
  size_t size() const { return ops_.size(); }
  /// Position of `op` in the list.
  size_t indexOf(const Op *op) const;
  /// Appends, or inserts before `before` when given.
  Op *insert(std::unique_ptr<Op> op, const Op *before = nullptr);
  /// Removes an op whose result has no remaining users.
  void erase(Op *op);

  llvm::ArrayRef<Value *> results() const { return results_; }
  void setResults(llvm::ArrayRef<Value *> results) { results_.assign(results.begin(), results.end()); }

  /// Ops using `v`, in order. Linear in the function's size: functions hold
  /// a few hundred ops, and rewrites are rare.
  llvm::SmallVector<Op *, 4> users(const Value *v) const;
  bool isReturned(const Value *v) const;
  bool hasUses(const Value *v) const { return !users(v).empty() || isReturned(v); }
  void replaceAllUsesWith(Value *from, Value *to);

private:
  std::string name_;
  llvm::SmallVector<std::unique_ptr<Value>, 2> arguments_;
  OpList ops_;
  llvm::SmallVector<Value *, 2> results_;
};

/// The KV cache: K and V, each [layers][seqLen][kvDim] of `dtype`.
struct KvCacheSpec {
  int64_t layers = 0;
  int64_t seqLen = 0;
  int64_t kvDim = 0;
  DType dtype = DType::f32;

  uint64_t bytesPerTensor() const { return uint64_t(layers) * seqLen * kvDim * byteSize(dtype); }
  uint64_t totalBytes() const { return 2 * bytesPerTensor(); }
};

class Module {
public:
  explicit Module(std::string name) : name_(std::move(name)) {}
  Module(const Module &) = delete;
  Module &operator=(const Module &) = delete;

  const std::string &name() const { return name_; }

  KvCacheSpec &kvCache() { return kvCache_; }
  const KvCacheSpec &kvCache() const { return kvCache_; }

  /// Weights in declaration order; names are unique.
  Weight *addWeight(std::unique_ptr<Weight> weight);
  Weight *weight(llvm::StringRef name) const;
  llvm::ArrayRef<std::unique_ptr<Weight>> weights() const { return weights_; }
  /// Drops weights that no function and no other weight uses; returns how many.
  unsigned removeUnusedWeights();
  /// A name not yet used by any weight, starting from `base`.
  std::string uniqueWeightName(llvm::StringRef base) const;

  Function *addFunction(std::string name);
  Function *function(llvm::StringRef name) const;
  llvm::ArrayRef<std::unique_ptr<Function>> functions() const { return functions_; }

  /// Tensor parallelism: 0 for a module that is not partitioned; N >= 1 for
  /// one partitioned for N ranks, whose functions and types describe one rank
  /// (printed `tensor_parallel N`). Set by passes/PartitionTensorParallel.
  int64_t tensorParallel() const { return tensorParallel_; }
  void setTensorParallel(int64_t ranks) { tensorParallel_ = ranks; }

  /// Activation arena size after memory planning; -1 before.
  int64_t arenaBytes() const { return arenaBytes_; }
  void setArenaBytes(int64_t bytes) { arenaBytes_ = bytes; }

private:
  std::string name_;
  KvCacheSpec kvCache_;
  std::vector<std::unique_ptr<Weight>> weights_;
  llvm::StringMap<Weight *> weightsByName_;
  std::vector<std::unique_ptr<Function>> functions_;
  int64_t arenaBytes_ = -1;
  int64_t tensorParallel_ = 0;
};

/// A stable, readable numbering of a function's values (%0, %1, ... for
/// results in op order; arguments keep their names). The printer uses it,
/// and so do messages and dumps that must agree with the printed IR.
class ValueNumbering {
public:
  explicit ValueNumbering(const Function &f);
  std::string name(const Value *v) const;

private:
  llvm::DenseMap<const Value *, unsigned> numbers_;
};

} // namespace llamac::ir
