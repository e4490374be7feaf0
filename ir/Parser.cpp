#include "ir/Parser.h"

#include "ir/Verifier.h"

#include "llvm/ADT/StringMap.h"
#include "llvm/Support/FormatVariadic.h"

#include <cctype>

namespace llamac::ir {

namespace {

/// A hand-written recursive-descent parser over a character cursor: the
/// grammar is small and line-oriented, so no separate token stream is kept.
class Parser {
public:
  Parser(llvm::StringRef text, llvm::StringRef name) : text_(text), name_(name) {}

  llvm::Expected<std::unique_ptr<Module>> parseModule();

private:
  // --- Lexing ---------------------------------------------------------------
  void skipSpace() {
    while (pos_ < text_.size()) {
      char c = text_[pos_];
      if (c == '/' && pos_ + 1 < text_.size() && text_[pos_ + 1] == '/') {
        while (pos_ < text_.size() && text_[pos_] != '\n') ++pos_;
      } else if (std::isspace(static_cast<unsigned char>(c))) {
        ++pos_;
      } else {
        break;
      }
    }
  }

  /// The next token's text, for messages.
  llvm::StringRef peekToken() {
    skipSpace();
    if (pos_ >= text_.size()) return "end of input";
    size_t end = pos_ + 1;
    auto isWord = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.'; };
    if (isWord(text_[pos_]) || text_[pos_] == '%' || text_[pos_] == '@' || text_[pos_] == '-')
      while (end < text_.size() && isWord(text_[end])) ++end;
    return text_.slice(pos_, end);
  }

  llvm::Error error(const llvm::Twine &expected) {
    llvm::StringRef found = peekToken();
    size_t line = 1 + text_.take_front(pos_).count('\n');
    size_t lineStart = text_.take_front(pos_).rfind('\n');
    size_t column = lineStart == llvm::StringRef::npos ? pos_ + 1 : pos_ - lineStart;
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   llvm::formatv("{0}:{1}:{2}: expected {3}, found '{4}'", name_, line, column,
                                                 expected.str(), found));
  }

  bool consume(llvm::StringRef punct) {
    skipSpace();
    if (!text_.substr(pos_).startswith(punct)) return false;
    pos_ += punct.size();
    return true;
  }

  llvm::Error expect(llvm::StringRef punct) {
    if (consume(punct)) return llvm::Error::success();
    return error("'" + punct + "'");
  }

  /// A bare word: letters, digits, '_' and '.'.
  llvm::StringRef lexWord() {
    skipSpace();
    size_t start = pos_;
    while (pos_ < text_.size() &&
           (std::isalnum(static_cast<unsigned char>(text_[pos_])) || text_[pos_] == '_' || text_[pos_] == '.'))
      ++pos_;
    return text_.slice(start, pos_);
  }

  bool consumeKeyword(llvm::StringRef word) {
    size_t save = pos_;
    if (lexWord() == word) return true;
    pos_ = save;
    return false;
  }

  llvm::Error expectKeyword(llvm::StringRef word) {
    if (consumeKeyword(word)) return llvm::Error::success();
    return error("'" + word + "'");
  }

  /// A name after a sigil: `%token`, `@l0.wq`.
  llvm::Expected<llvm::StringRef> lexSigilName(char sigil, llvm::StringRef what) {
    skipSpace();
    if (pos_ >= text_.size() || text_[pos_] != sigil) return error(what);
    ++pos_;
    llvm::StringRef name = lexWord();
    if (name.empty()) return error(what);
    return name;
  }

  llvm::Expected<int64_t> lexInteger() {
    skipSpace();
    size_t start = pos_;
    if (pos_ < text_.size() && text_[pos_] == '-') ++pos_;
    while (pos_ < text_.size() && std::isdigit(static_cast<unsigned char>(text_[pos_]))) ++pos_;
    int64_t value;
    if (text_.slice(start, pos_).getAsInteger(10, value)) {
      pos_ = start;
      return error("an integer");
    }
    return value;
  }

  llvm::Expected<double> lexFloat() {
    skipSpace();
    size_t start = pos_;
    while (pos_ < text_.size() && (std::isalnum(static_cast<unsigned char>(text_[pos_])) || text_[pos_] == '.' ||
                                   text_[pos_] == '-' || text_[pos_] == '+'))
      ++pos_;
    double value;
    if (text_.slice(start, pos_).getAsDouble(value)) {
      pos_ = start;
      return error("a number");
    }
    return value;
  }

  // --- Grammar --------------------------------------------------------------
  llvm::Expected<TensorType> parseType();
  llvm::Error parseKvCache(Module &m);
  llvm::Error parseWeight(Module &m);
  llvm::Error parseFunction(Module &m);
  llvm::Error parseOp(Module &m, Function &f, llvm::StringMap<Value *> &values);
  llvm::Expected<Value *> parseOperand(Module &m, llvm::StringMap<Value *> &values);

  llvm::StringRef text_;
  llvm::StringRef name_;
  size_t pos_ = 0;
};

llvm::Expected<TensorType> Parser::parseType() {
  if (auto e = expectKeyword("tensor")) return e;
  if (auto e = expect("<")) return e;
  skipSpace();
  size_t close = text_.find('>', pos_);
  if (close == llvm::StringRef::npos) return error("'>' closing the tensor type");
  llvm::SmallVector<llvm::StringRef, 4> parts;
  text_.slice(pos_, close).split(parts, 'x');
  TensorType type;
  std::optional<DType> dtype = parseDType(parts.back().trim());
  if (!dtype) return error("an element type (f32, f16, bf16, i8, i32) in the tensor type");
  type.dtype = *dtype;
  for (llvm::StringRef dim : llvm::ArrayRef<llvm::StringRef>(parts).drop_back()) {
    int64_t d;
    if (dim.trim().getAsInteger(10, d) || d <= 0) return error("positive dimensions in the tensor type");
    type.shape.push_back(d);
  }
  pos_ = close + 1;
  return type;
}

llvm::Error Parser::parseKvCache(Module &m) {
  KvCacheSpec &kv = m.kvCache();
  for (auto [key, field] : {std::pair{"layers", &kv.layers}, {"seq_len", &kv.seqLen}, {"kv_dim", &kv.kvDim}}) {
    if (auto e = expectKeyword(key)) return e;
    if (auto e = expect("=")) return e;
    auto v = lexInteger();
    if (!v) return v.takeError();
    *field = *v;
    if (auto e = expect(",")) return e;
  }
  if (auto e = expectKeyword("dtype")) return e;
  if (auto e = expect("=")) return e;
  std::optional<DType> dtype = parseDType(lexWord());
  if (!dtype) return error("the KV cache dtype");
  kv.dtype = *dtype;
  return llvm::Error::success();
}

llvm::Error Parser::parseWeight(Module &m) {
  auto name = lexSigilName('@', "a weight name");
  if (!name) return name.takeError();
  if (m.weight(*name)) return error("a new weight name (@" + *name + " is declared twice)");
  if (auto e = expect(":")) return e;
  auto type = parseType();
  if (!type) return type.takeError();
  if (auto e = expect("=")) return e;
  llvm::StringRef kind = lexWord();
  if (kind == "file") {
    auto offset = lexInteger();
    if (!offset) return offset.takeError();
    if (*offset < 0) return error("a non-negative file offset");
    m.addWeight(std::make_unique<Weight>(name->str(), *type, uint64_t(*offset)));
    return llvm::Error::success();
  }
  WeightExpr expr;
  if (kind == "scale_columns")
    expr = WeightExpr::ScaleColumns;
  else if (kind == "convert")
    expr = WeightExpr::Convert;
  else if (kind == "shard_rows")
    expr = WeightExpr::ShardRows;
  else if (kind == "shard_cols")
    expr = WeightExpr::ShardColumns;
  else
    return error("'file', 'scale_columns', 'convert', 'shard_rows' or 'shard_cols'");
  if (auto e = expect("(")) return e;
  llvm::SmallVector<Weight *, 2> operands;
  do {
    auto operand = lexSigilName('@', "a weight operand");
    if (!operand) return operand.takeError();
    Weight *w = m.weight(*operand);
    if (!w) return error("a weight declared earlier (@" + *operand + " is not)");
    operands.push_back(w);
  } while (consume(","));
  if (auto e = expect(")")) return e;
  m.addWeight(std::make_unique<Weight>(name->str(), *type, expr, std::move(operands)));
  return llvm::Error::success();
}

llvm::Expected<Value *> Parser::parseOperand(Module &m, llvm::StringMap<Value *> &values) {
  skipSpace();
  if (pos_ < text_.size() && text_[pos_] == '@') {
    auto name = lexSigilName('@', "a weight");
    if (!name) return name.takeError();
    if (Weight *w = m.weight(*name)) return w;
    return error("a declared weight (@" + *name + " is not)");
  }
  size_t start = pos_;
  auto name = lexSigilName('%', "an operand (%value or @weight)");
  if (!name) return name.takeError();
  auto it = values.find(*name);
  if (it == values.end()) {
    pos_ = start;
    return error("a value defined earlier (%" + *name + " is not)");
  }
  return it->second;
}

llvm::Error Parser::parseOp(Module &m, Function &f, llvm::StringMap<Value *> &values) {
  std::optional<std::string> resultName;
  skipSpace();
  if (text_.substr(pos_).startswith("%")) {
    auto name = lexSigilName('%', "a result name");
    if (!name) return name.takeError();
    if (values.count(*name)) return error("a new value name (%" + *name + " is defined twice)");
    resultName = name->str();
    if (auto e = expect("=")) return e;
  }
  size_t opStart = pos_;
  llvm::StringRef mnemonic = lexWord();
  std::optional<OpKind> kind = parseOpKind(mnemonic);
  if (!kind) {
    pos_ = opStart;
    return error("an op name");
  }
  const OpInfo &info = opInfo(*kind);
  llvm::SmallVector<Value *, 5> operands;
  for (unsigned i = 0; i < info.numOperands; ++i) {
    if (i > 0)
      if (auto e = expect(",")) return e;
    auto v = parseOperand(m, values);
    if (!v) return v.takeError();
    operands.push_back(*v);
  }
  auto op = std::make_unique<Op>(*kind, operands, llvm::ArrayRef<Attr>());
  if (consume("{")) {
    do {
      size_t keyStart = pos_;
      std::optional<AttrKey> key = parseAttrKey(lexWord());
      if (!key) {
        pos_ = keyStart;
        return error("an attribute name");
      }
      if (auto e = expect("=")) return e;
      if (attrKind(*key) == AttrKind::Int) {
        auto v = lexInteger();
        if (!v) return v.takeError();
        op->setAttr(Attr::integer(*key, *v));
      } else {
        auto v = lexFloat();
        if (!v) return v.takeError();
        op->setAttr(Attr::real(*key, *v));
      }
    } while (consume(","));
    if (auto e = expect("}")) return e;
  }
  if (info.numResults == 1) {
    if (!resultName) {
      pos_ = opStart;
      return error("'%name =' before " + info.mnemonic + ", which has a result");
    }
    if (auto e = expect(":")) return e;
    skipSpace();
    size_t typeStart = pos_;
    auto type = parseType();
    if (!type) return type.takeError();
    TensorType inferred;
    if (auto e = inferResultType(*op, inferred)) {
      pos_ = opStart;
      return error("a well-typed op (" + llvm::toString(std::move(e)) + ")");
    }
    if (!(inferred == *type)) {
      pos_ = typeStart;
      return error("the result type " + inferred.str() + " of " + info.mnemonic);
    }
    op->setResult(*type);
    if (consumeKeyword("at")) {
      auto offset = lexInteger();
      if (!offset) return offset.takeError();
      op->result()->setArenaOffset(*offset);
    }
    values[*resultName] = op->result();
  } else if (resultName) {
    pos_ = opStart;
    return error("an op with a result (" + info.mnemonic + " has none)");
  } else {
    TensorType unused;
    if (auto e = inferResultType(*op, unused)) {
      pos_ = opStart;
      return error("a well-typed op (" + llvm::toString(std::move(e)) + ")");
    }
  }
  f.insert(std::move(op));
  return llvm::Error::success();
}

llvm::Error Parser::parseFunction(Module &m) {
  auto name = lexSigilName('@', "a function name");
  if (!name) return name.takeError();
  if (m.function(*name)) return error("a new function name (@" + *name + " is defined twice)");
  Function &f = *m.addFunction(name->str());
  llvm::StringMap<Value *> values;
  if (auto e = expect("(")) return e;
  if (!consume(")")) {
    do {
      auto arg = lexSigilName('%', "an argument");
      if (!arg) return arg.takeError();
      if (auto e = expect(":")) return e;
      auto type = parseType();
      if (!type) return type.takeError();
      values[*arg] = f.addArgument(arg->str(), *type);
    } while (consume(","));
    if (auto e = expect(")")) return e;
  }
  if (auto e = expect("->")) return e;
  llvm::SmallVector<TensorType, 2> resultTypes;
  do {
    auto type = parseType();
    if (!type) return type.takeError();
    resultTypes.push_back(*type);
  } while (consume(","));
  if (auto e = expect("{")) return e;
  while (!consumeKeyword("return"))
    if (auto e = parseOp(m, f, values)) return e;
  llvm::SmallVector<Value *, 2> results;
  do {
    auto v = parseOperand(m, values);
    if (!v) return v.takeError();
    results.push_back(*v);
  } while (consume(","));
  if (results.size() != resultTypes.size()) return error(llvm::formatv("{0} returned values", resultTypes.size()));
  for (size_t i = 0; i < results.size(); ++i)
    if (!(results[i]->type() == resultTypes[i]))
      return error("a returned value of type " + resultTypes[i].str());
  f.setResults(results);
  return expect("}");
}

llvm::Expected<std::unique_ptr<Module>> Parser::parseModule() {
  if (auto e = expectKeyword("module")) return e;
  auto name = lexSigilName('@', "the module name");
  if (!name) return name.takeError();
  auto m = std::make_unique<Module>(name->str());
  if (auto e = expect("{")) return e;
  while (!consume("}")) {
    llvm::StringRef word = peekToken();
    llvm::Error e = llvm::Error::success();
    if (consumeKeyword("kv_cache")) {
      e = parseKvCache(*m);
    } else if (consumeKeyword("tensor_parallel")) {
      auto ranks = lexInteger();
      if (!ranks) return ranks.takeError();
      if (*ranks < 1) return error("a positive number of ranks after 'tensor_parallel'");
      m->setTensorParallel(*ranks);
    } else if (consumeKeyword("arena")) {
      auto bytes = lexInteger();
      if (!bytes) return bytes.takeError();
      m->setArenaBytes(*bytes);
      e = expectKeyword("bytes");
    } else if (consumeKeyword("weight")) {
      e = parseWeight(*m);
    } else if (consumeKeyword("func")) {
      e = parseFunction(*m);
    } else {
      (void)word;
      return error("'tensor_parallel', 'kv_cache', 'arena', 'weight', 'func' or '}'");
    }
    if (e) return e;
  }
  skipSpace();
  if (pos_ != text_.size()) return error("end of input after the module");
  if (auto e = verify(*m))
    return llvm::createStringError(llvm::inconvertibleErrorCode(), name_ + ": " + llvm::toString(std::move(e)));
  return m;
}

} // namespace

llvm::Expected<std::unique_ptr<Module>> parseModule(llvm::StringRef text, llvm::StringRef bufferName) {
  return Parser(text, bufferName).parseModule();
}

} // namespace llamac::ir
