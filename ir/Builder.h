//===- ir/Builder.h - Creating ops with validation ---------------*- C++ -*-===//
//
// Builder creates ops at an insertion point, checks their operands and
// attributes against the op table and infers the result type. Every helper
// returns an error naming the op and the offending value instead of building
// ill-typed IR.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "ir/IR.h"

namespace llamac::ir {

class Builder {
public:
  /// Inserts at the end of `f`, or before `before` when given.
  explicit Builder(Function &f, const Op *before = nullptr) : f_(f), before_(before) {}
  void setInsertionPoint(const Op *before) { before_ = before; }

  /// The general form: any op of the table.
  llvm::Expected<Op *> create(OpKind kind, llvm::ArrayRef<Value *> operands, llvm::ArrayRef<Attr> attrs = {});
  /// The same for ops with one result, returning it.
  llvm::Expected<Value *> value(OpKind kind, llvm::ArrayRef<Value *> operands, llvm::ArrayRef<Attr> attrs = {});

  llvm::Expected<Value *> embedding(Value *table, Value *token);
  llvm::Expected<Value *> rmsNorm(Value *x, Value *gain, double eps);
  llvm::Expected<Value *> matmul(Value *x, Value *w);
  llvm::Expected<Value *> rope(Value *x, Value *pos, int64_t headSize, double theta);
  llvm::Expected<Op *> kvWrite(Value *k, Value *v, Value *pos, int64_t layer);
  llvm::Expected<Value *> attention(Value *q, Value *pos, int64_t layer, int64_t nHeads, int64_t nKvHeads,
                                    int64_t headSize);
  llvm::Expected<Value *> siluMul(Value *a, Value *b);
  llvm::Expected<Value *> add(Value *a, Value *b);
  llvm::Expected<Value *> argmax(Value *x);

private:
  Function &f_;
  const Op *before_;
};

} // namespace llamac::ir
