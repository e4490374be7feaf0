//===- ir/Ops.h - Op kinds, attributes and the op table ---------*- C++ -*-===//
#pragma once

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <cstdint>
#include <optional>

namespace llamac::ir {

class Op;
struct TensorType;

enum class OpKind : uint8_t {
#define OP(Kind, Mnemonic, NumOperands, NumResults, Effects, ...) Kind,
#include "ir/Ops.def"
};
constexpr unsigned kNumOpKinds = 0
#define OP(Kind, Mnemonic, NumOperands, NumResults, Effects, ...) +1
#include "ir/Ops.def"
    ;

enum class AttrKey : uint8_t {
#define ATTR(Name, Kind) Name,
#include "ir/Attrs.def"
};
enum class AttrKind : uint8_t { Int, Float };

llvm::StringRef toString(AttrKey key);
AttrKind attrKind(AttrKey key);
std::optional<AttrKey> parseAttrKey(llvm::StringRef name);

/// An attribute value: typed by its key's AttrKind.
struct Attr {
  AttrKey key;
  int64_t intValue = 0;
  double floatValue = 0;

  static Attr integer(AttrKey key, int64_t v) { return {key, v, 0}; }
  static Attr real(AttrKey key, double v) { return {key, 0, v}; }
  friend bool operator==(const Attr &a, const Attr &b) {
    return a.key == b.key && a.intValue == b.intValue && a.floatValue == b.floatValue;
  }
};

enum class Effects : uint8_t { Pure, ReadsKv, WritesKv };

struct AttrSpec {
  AttrKey key;
  bool required;
};

/// One row of the op table.
struct OpInfo {
  OpKind kind;
  llvm::StringRef mnemonic;
  unsigned numOperands;
  unsigned numResults;
  Effects effects;
  llvm::ArrayRef<AttrSpec> attrs;
};

const OpInfo &opInfo(OpKind kind);

/// The matmul family: the ops that can take an RMS prologue (they declare
/// the optional `rms_eps` attribute) and read operand 0 in full for every row.
bool takesRmsPrologue(OpKind kind);
std::optional<OpKind> parseOpKind(llvm::StringRef mnemonic);
inline llvm::StringRef toString(OpKind kind) { return opInfo(kind).mnemonic; }

/// Checks an op's operands and attributes and computes its result type
/// (ops with no result leave `result` alone). The error names the op and
/// the offending operand.
llvm::Error inferResultType(const Op &op, TensorType &result);

} // namespace llamac::ir
