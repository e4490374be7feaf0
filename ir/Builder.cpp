#include "ir/Builder.h"

namespace llamac::ir {

llvm::Expected<Op *> Builder::create(OpKind kind, llvm::ArrayRef<Value *> operands, llvm::ArrayRef<Attr> attrs) {
  auto op = std::make_unique<Op>(kind, operands, llvm::ArrayRef<Attr>());
  for (const Attr &a : attrs) op->setAttr(a);
  TensorType type;
  if (auto e = inferResultType(*op, type)) return e;
  if (op->info().numResults == 1) op->setResult(std::move(type));
  return f_.insert(std::move(op), before_);
}

llvm::Expected<Value *> Builder::value(OpKind kind, llvm::ArrayRef<Value *> operands, llvm::ArrayRef<Attr> attrs) {
  auto op = create(kind, operands, attrs);
  if (!op) return op.takeError();
  return (*op)->result();
}

llvm::Expected<Value *> Builder::embedding(Value *table, Value *token) {
  return value(OpKind::Embedding, {table, token});
}

llvm::Expected<Value *> Builder::rmsNorm(Value *x, Value *gain, double eps) {
  return value(OpKind::RmsNorm, {x, gain}, {Attr::real(AttrKey::eps, eps)});
}

llvm::Expected<Value *> Builder::matmul(Value *x, Value *w) { return value(OpKind::MatMul, {x, w}); }

llvm::Expected<Value *> Builder::rope(Value *x, Value *pos, int64_t headSize, double theta) {
  return value(OpKind::Rope, {x, pos},
               {Attr::integer(AttrKey::head_size, headSize), Attr::real(AttrKey::theta, theta)});
}

llvm::Expected<Op *> Builder::kvWrite(Value *k, Value *v, Value *pos, int64_t layer) {
  return create(OpKind::KvWrite, {k, v, pos}, {Attr::integer(AttrKey::layer, layer)});
}

llvm::Expected<Value *> Builder::attention(Value *q, Value *pos, int64_t layer, int64_t nHeads, int64_t nKvHeads,
                                           int64_t headSize) {
  return value(OpKind::Attention, {q, pos},
               {Attr::integer(AttrKey::layer, layer), Attr::integer(AttrKey::n_heads, nHeads),
                Attr::integer(AttrKey::n_kv_heads, nKvHeads), Attr::integer(AttrKey::head_size, headSize)});
}

llvm::Expected<Value *> Builder::siluMul(Value *a, Value *b) { return value(OpKind::SiluMul, {a, b}); }
llvm::Expected<Value *> Builder::add(Value *a, Value *b) { return value(OpKind::Add, {a, b}); }
llvm::Expected<Value *> Builder::argmax(Value *x) { return value(OpKind::ArgMax, {x}); }

} // namespace llamac::ir
