#include "ir/Printer.h"

#include "llvm/ADT/STLExtras.h"

#include <charconv>

namespace llamac::ir {

std::string formatDouble(double v) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  (void)ec;
  std::string s(buf, end);
  // Keep floats recognizable as floats: "2" would read back as an integer.
  if (s.find_first_of(".enai") == std::string::npos) s += ".0";
  return s;
}

namespace {

void printAttrs(const Op &op, llvm::raw_ostream &os) {
  if (op.attrs().empty()) return;
  os << " {";
  llvm::interleave(
      op.attrs(), os,
      [&](const Attr &a) {
        os << toString(a.key) << " = ";
        if (attrKind(a.key) == AttrKind::Int)
          os << a.intValue;
        else
          os << formatDouble(a.floatValue);
      },
      ", ");
  os << "}";
}

void printOp(const Op &op, const ValueNumbering &names, llvm::raw_ostream &os) {
  if (op.result()) os << names.name(op.result()) << " = ";
  os << op.mnemonic();
  if (!op.operands().empty()) os << " ";
  llvm::interleave(op.operands(), os, [&](const Value *v) { os << names.name(v); }, ", ");
  printAttrs(op, os);
  if (const Value *r = op.result()) {
    os << " : " << r->type().str();
    if (r->arenaOffset() >= 0) os << " at " << r->arenaOffset();
  }
}

void printWeight(const Weight &w, llvm::raw_ostream &os) {
  os << "  weight @" << w.name() << " : " << w.type().str() << " = ";
  if (w.expr() == WeightExpr::File) {
    os << "file " << w.fileOffset();
    return;
  }
  os << toString(w.expr()) << "(";
  llvm::interleave(w.operands(), os, [&](const Weight *o) { os << "@" << o->name(); }, ", ");
  os << ")";
}

} // namespace

std::string toString(const Op &op, const ValueNumbering &names) {
  std::string s;
  llvm::raw_string_ostream os(s);
  printOp(op, names, os);
  return os.str();
}

void print(const Function &f, llvm::raw_ostream &os) {
  ValueNumbering names(f);
  os << "  func @" << f.name() << "(";
  llvm::interleave(
      f.arguments(), os, [&](const auto &a) { os << "%" << a->name() << " : " << a->type().str(); }, ", ");
  os << ") -> ";
  llvm::interleave(f.results(), os, [&](const Value *v) { os << v->type().str(); }, ", ");
  os << " {\n";
  for (const auto &op : f.ops()) {
    os << "    ";
    printOp(*op, names, os);
    os << "\n";
  }
  os << "    return ";
  llvm::interleave(f.results(), os, [&](const Value *v) { os << names.name(v); }, ", ");
  os << "\n  }\n";
}

void print(const Module &m, llvm::raw_ostream &os) {
  const KvCacheSpec &kv = m.kvCache();
  os << "module @" << m.name() << " {\n";
  if (m.tensorParallel() > 0) os << "  tensor_parallel " << m.tensorParallel() << "\n";
  os << "  kv_cache layers = " << kv.layers << ", seq_len = " << kv.seqLen << ", kv_dim = " << kv.kvDim
     << ", dtype = " << toString(kv.dtype) << "\n";
  if (m.arenaBytes() >= 0) os << "  arena " << m.arenaBytes() << " bytes\n";
  for (const auto &w : m.weights()) {
    printWeight(*w, os);
    os << "\n";
  }
  for (const auto &f : m.functions()) {
    os << "\n";
    print(*f, os);
  }
  os << "}\n";
}

std::string toString(const Module &m) {
  std::string s;
  llvm::raw_string_ostream os(s);
  print(m, os);
  return os.str();
}

} // namespace llamac::ir
