//===- ir/Ops.cpp - The op table and result type inference ----------------===//

#include "ir/Ops.h"
#include "ir/IR.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringSwitch.h"
#include "llvm/Support/FormatVariadic.h"

namespace llamac::ir {

//===----------------------------------------------------------------------===//
// Attribute keys
//===----------------------------------------------------------------------===//

llvm::StringRef toString(AttrKey key) {
  switch (key) {
#define ATTR(Name, Kind) case AttrKey::Name: return #Name;
#include "ir/Attrs.def"
  }
  return "?";
}

AttrKind attrKind(AttrKey key) {
  switch (key) {
#define ATTR(Name, Kind) case AttrKey::Name: return AttrKind::Kind;
#include "ir/Attrs.def"
  }
  return AttrKind::Int;
}

std::optional<AttrKey> parseAttrKey(llvm::StringRef name) {
  return llvm::StringSwitch<std::optional<AttrKey>>(name)
#define ATTR(Name, Kind) .Case(#Name, AttrKey::Name)
#include "ir/Attrs.def"
      .Default(std::nullopt);
}

//===----------------------------------------------------------------------===//
// The table, generated from Ops.def
//===----------------------------------------------------------------------===//

namespace {
#define Req(Name) AttrSpec{AttrKey::Name, true}
#define Opt(Name) AttrSpec{AttrKey::Name, false}
#define OP(Kind, Mnemonic, NumOperands, NumResults, Eff, ...)                                 \
  constexpr AttrSpec Kind##Attrs[] = {__VA_ARGS__ __VA_OPT__(, ) AttrSpec{AttrKey::eps, false}};
#include "ir/Ops.def"
#undef Req
#undef Opt

// Each attribute list above ends with a sentinel so that empty lists are
// legal C++; the sentinel is not part of the op's attributes.
const OpInfo kOpTable[] = {
#define OP(Kind, Mnemonic, NumOperands, NumResults, Eff, ...)                                 \
  {OpKind::Kind, Mnemonic, NumOperands, NumResults, Effects::Eff,                          \
   llvm::ArrayRef<AttrSpec>(Kind##Attrs, std::size(Kind##Attrs) - 1)},
#include "ir/Ops.def"
};
} // namespace

const OpInfo &opInfo(OpKind kind) { return kOpTable[static_cast<unsigned>(kind)]; }

bool takesRmsPrologue(OpKind kind) {
  return llvm::any_of(opInfo(kind).attrs, [](const AttrSpec &a) { return a.key == AttrKey::rms_eps; });
}

std::optional<OpKind> parseOpKind(llvm::StringRef mnemonic) {
  return llvm::StringSwitch<std::optional<OpKind>>(mnemonic)
#define OP(Kind, Mnemonic, NumOperands, NumResults, Effects, ...) .Case(Mnemonic, OpKind::Kind)
#include "ir/Ops.def"
      .Default(std::nullopt);
}

//===----------------------------------------------------------------------===//
// Type inference: one function per op, checking operands as it goes
//===----------------------------------------------------------------------===//

namespace {

/// Reports problems with one op's operands, naming the op and the operand.
class OperandChecker {
public:
  explicit OperandChecker(const Op &op) : op_(op) {}

  llvm::Error fail(unsigned i, const llvm::Twine &what) const {
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   llvm::formatv("{0}: operand {1} ({2}) {3}", op_.mnemonic(), i,
                                                 op_.operand(i)->describe(), what.str()));
  }
  llvm::Error failOp(const llvm::Twine &what) const {
    return llvm::createStringError(llvm::inconvertibleErrorCode(), op_.mnemonic() + ": " + what);
  }

  const TensorType &type(unsigned i) const { return op_.operand(i)->type(); }

  /// An f32 activation vector, of `n` elements when n >= 0.
  llvm::Error vector(unsigned i, int64_t n = -1) const {
    const TensorType &t = type(i);
    if (t.dtype != DType::f32 || t.rank() != 1)
      return fail(i, "must be an f32 vector");
    if (n >= 0 && t.shape[0] != n)
      return fail(i, llvm::formatv("must have {0} elements", n));
    return llvm::Error::success();
  }

  /// A weight matrix [N][K] of a float dtype, with K == k when k >= 0.
  llvm::Error matrix(unsigned i, int64_t k = -1) const {
    const TensorType &t = type(i);
    if (!op_.operand(i)->isWeight()) return fail(i, "must be a weight");
    if (t.rank() != 2 || !isFloat(t.dtype)) return fail(i, "must be a float matrix");
    if (k >= 0 && t.shape[1] != k)
      return fail(i, llvm::formatv("has {0} columns, the input vector has {1} elements", t.shape[1], k));
    return llvm::Error::success();
  }

  /// A weight vector of n elements.
  llvm::Error gain(unsigned i, int64_t n) const {
    const TensorType &t = type(i);
    if (!op_.operand(i)->isWeight() || t.rank() != 1 || !isFloat(t.dtype) || t.shape[0] != n)
      return fail(i, llvm::formatv("must be a float weight vector of {0} elements", n));
    return llvm::Error::success();
  }

  llvm::Error position(unsigned i) const {
    if (!(type(i) == TensorType::scalar(DType::i32))) return fail(i, "must be an i32 scalar");
    return llvm::Error::success();
  }

  int64_t length(unsigned i) const { return type(i).shape[0]; }
  int64_t rows(unsigned i) const { return type(i).shape[0]; }

private:
  const Op &op_;
};

TensorType vectorType(int64_t n) { return TensorType(DType::f32, {n}); }

// Checks x (operand 0) and a matrix at `w` against it; returns N.
llvm::Error matVec(const OperandChecker &c, unsigned w, int64_t &n) {
  if (auto e = c.vector(0)) return e;
  if (auto e = c.matrix(w, c.length(0))) return e;
  n = c.rows(w);
  return llvm::Error::success();
}

llvm::Error ropeAttrs(const Op &op, int64_t n) {
  int64_t hs = op.intAttr(AttrKey::head_size);
  if (hs <= 0 || hs % 2 != 0)
    return OperandChecker(op).failOp(llvm::formatv("head_size must be positive and even, got {0}", hs));
  if (n % hs != 0)
    return OperandChecker(op).failOp(llvm::formatv("{0} elements are not a whole number of heads of {1}", n, hs));
  return llvm::Error::success();
}

llvm::Error inferEmbedding(const Op &op, TensorType &result) {
  OperandChecker c(op);
  if (auto e = c.matrix(0)) return e;
  if (auto e = c.position(1)) return e;
  result = vectorType(c.type(0).shape[1]);
  return llvm::Error::success();
}

llvm::Error inferRmsNorm(const Op &op, TensorType &result) {
  OperandChecker c(op);
  if (auto e = c.vector(0)) return e;
  if (auto e = c.gain(1, c.length(0))) return e;
  result = c.type(0);
  return llvm::Error::success();
}

llvm::Error inferRmsNormalize(const Op &op, TensorType &result) {
  OperandChecker c(op);
  if (auto e = c.vector(0)) return e;
  result = c.type(0);
  return llvm::Error::success();
}

llvm::Error inferMatMul(const Op &op, TensorType &result) {
  OperandChecker c(op);
  int64_t n;
  if (auto e = matVec(c, 1, n)) return e;
  result = vectorType(n);
  return llvm::Error::success();
}

llvm::Error inferMatMulArgMax(const Op &op, TensorType &result) {
  OperandChecker c(op);
  int64_t n;
  if (auto e = matVec(c, 1, n)) return e;
  result = TensorType::scalar(DType::i32);
  return llvm::Error::success();
}

llvm::Error inferMatMulAdd(const Op &op, TensorType &result) {
  OperandChecker c(op);
  int64_t n;
  if (auto e = matVec(c, 1, n)) return e;
  if (auto e = c.vector(2, n)) return e;
  result = vectorType(n);
  return llvm::Error::success();
}

llvm::Error inferMatMulSwiglu(const Op &op, TensorType &result) {
  OperandChecker c(op);
  int64_t n;
  if (auto e = matVec(c, 1, n)) return e;
  if (auto e = c.matrix(2, c.length(0))) return e;
  if (c.rows(2) != n) return c.fail(2, llvm::formatv("must have {0} rows like operand 1", n));
  result = vectorType(n);
  return llvm::Error::success();
}

llvm::Error qkvCommon(const OperandChecker &c, int64_t &nq, int64_t &nkv) {
  if (auto e = matVec(c, 1, nq)) return e;
  if (auto e = c.matrix(2, c.length(0))) return e;
  if (auto e = c.matrix(3, c.length(0))) return e;
  nkv = c.rows(2);
  if (c.rows(3) != nkv) return c.fail(3, llvm::formatv("must have {0} rows like the K weight", nkv));
  return llvm::Error::success();
}

llvm::Error inferMatMulQkv(const Op &op, TensorType &result) {
  OperandChecker c(op);
  int64_t nq, nkv;
  if (auto e = qkvCommon(c, nq, nkv)) return e;
  result = vectorType(nq + 2 * nkv);
  return llvm::Error::success();
}

llvm::Error inferMatMulQkvRopeKv(const Op &op, TensorType &result) {
  OperandChecker c(op);
  int64_t nq, nkv;
  if (auto e = qkvCommon(c, nq, nkv)) return e;
  if (auto e = c.position(4)) return e;
  if (auto e = ropeAttrs(op, nq)) return e;
  if (auto e = ropeAttrs(op, nkv)) return e;
  result = vectorType(nq);
  return llvm::Error::success();
}

llvm::Error inferRope(const Op &op, TensorType &result) {
  OperandChecker c(op);
  if (auto e = c.vector(0)) return e;
  if (auto e = c.position(1)) return e;
  if (auto e = ropeAttrs(op, c.length(0))) return e;
  result = c.type(0);
  return llvm::Error::success();
}

llvm::Error inferKvWrite(const Op &op, TensorType &) {
  OperandChecker c(op);
  if (auto e = c.vector(0)) return e;
  if (auto e = c.vector(1, c.length(0))) return e;
  return c.position(2);
}

llvm::Error inferAttention(const Op &op, TensorType &result) {
  OperandChecker c(op);
  if (auto e = c.vector(0)) return e;
  if (auto e = c.position(1)) return e;
  int64_t heads = op.intAttr(AttrKey::n_heads), kvHeads = op.intAttr(AttrKey::n_kv_heads),
          hs = op.intAttr(AttrKey::head_size);
  if (heads <= 0 || kvHeads <= 0 || hs <= 0 || heads % kvHeads != 0)
    return c.failOp(llvm::formatv("n_heads {0} must be a positive multiple of n_kv_heads {1}, head_size {2} positive",
                                  heads, kvHeads, hs));
  if (c.length(0) != heads * hs) return c.fail(0, llvm::formatv("must have n_heads * head_size = {0} elements", heads * hs));
  result = c.type(0);
  return llvm::Error::success();
}

llvm::Error elementwise(const Op &op, TensorType &result) {
  OperandChecker c(op);
  if (auto e = c.vector(0)) return e;
  if (auto e = c.vector(1, c.length(0))) return e;
  result = c.type(0);
  return llvm::Error::success();
}
llvm::Error inferSiluMul(const Op &op, TensorType &result) { return elementwise(op, result); }
llvm::Error inferAdd(const Op &op, TensorType &result) { return elementwise(op, result); }

llvm::Error inferArgMax(const Op &op, TensorType &result) {
  OperandChecker c(op);
  if (auto e = c.vector(0)) return e;
  result = TensorType::scalar(DType::i32);
  return llvm::Error::success();
}

llvm::Error inferSlice(const Op &op, TensorType &result) {
  OperandChecker c(op);
  if (auto e = c.vector(0)) return e;
  int64_t offset = op.intAttr(AttrKey::offset), size = op.intAttr(AttrKey::size);
  if (offset < 0 || size <= 0 || offset + size > c.length(0))
    return c.failOp(llvm::formatv("[{0}, {0} + {1}) is not inside the {2} elements of its operand", offset, size,
                                  c.length(0)));
  result = vectorType(size);
  return llvm::Error::success();
}

llvm::Error inferAllReduce(const Op &op, TensorType &result) {
  OperandChecker c(op);
  if (auto e = c.vector(0)) return e;
  result = c.type(0);
  return llvm::Error::success();
}

llvm::Error inferAllGather(const Op &op, TensorType &result) {
  OperandChecker c(op);
  if (auto e = c.vector(0)) return e;
  int64_t ranks = op.intAttr(AttrKey::ranks);
  if (ranks < 1) return c.failOp(llvm::formatv("ranks must be positive, got {0}", ranks));
  result = vectorType(ranks * c.length(0));
  return llvm::Error::success();
}

/// The packed (logit, global index) of one rank's best classifier row.
TensorType argmaxKeyType() { return TensorType(DType::i32, {2}); }

llvm::Error inferMatMulArgMaxShard(const Op &op, TensorType &result) {
  OperandChecker c(op);
  int64_t n;
  if (auto e = matVec(c, 1, n)) return e;
  result = argmaxKeyType();
  return llvm::Error::success();
}

llvm::Error inferArgMaxReduce(const Op &op, TensorType &result) {
  OperandChecker c(op);
  if (!(c.type(0) == argmaxKeyType())) return c.fail(0, "must be an argmax key (tensor<2xi32>)");
  if (op.intAttr(AttrKey::ranks) < 1)
    return c.failOp(llvm::formatv("ranks must be positive, got {0}", op.intAttr(AttrKey::ranks)));
  result = TensorType::scalar(DType::i32);
  return llvm::Error::success();
}

/// Arity and attributes, common to every op, checked from the table.
llvm::Error checkArityAndAttrs(const Op &op) {
  const OpInfo &info = op.info();
  OperandChecker c(op);
  if (op.operands().size() != info.numOperands)
    return c.failOp(llvm::formatv("expected {0} operands, found {1}", info.numOperands, op.operands().size()));
  for (const AttrSpec &spec : info.attrs)
    if (spec.required && !op.hasAttr(spec.key))
      return c.failOp("missing attribute '" + toString(spec.key) + "'");
  for (const Attr &a : op.attrs())
    if (!llvm::any_of(info.attrs, [&](const AttrSpec &s) { return s.key == a.key; }))
      return c.failOp("does not take attribute '" + toString(a.key) + "'");
  return llvm::Error::success();
}

} // namespace

llvm::Error inferResultType(const Op &op, TensorType &result) {
  if (auto e = checkArityAndAttrs(op)) return e;
  if (op.hasAttr(AttrKey::rms_eps) && !(op.floatAttr(AttrKey::rms_eps) > 0))
    return OperandChecker(op).failOp("rms_eps must be positive");
  if (op.hasAttr(AttrKey::eps) && !(op.floatAttr(AttrKey::eps) > 0))
    return OperandChecker(op).failOp("eps must be positive");
  switch (op.kind()) {
#define OP(Kind, Mnemonic, NumOperands, NumResults, Effects, ...)                             \
  case OpKind::Kind: return infer##Kind(op, result);
#include "ir/Ops.def"
  }
  return llvm::Error::success();
}

} // namespace llamac::ir
