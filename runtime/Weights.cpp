#include "runtime/Weights.h"

#include "llvm/Support/FormatVariadic.h"

namespace llamac::runtime {

using namespace ir;

llvm::Error checkWeightsFit(const Module &m, uint64_t fileBytes, llvm::StringRef fileName) {
  for (const auto &w : m.weights()) {
    if (w->expr() != WeightExpr::File) continue;
    uint64_t bytes = w->type().byteSize();
    if (w->fileOffset() > fileBytes || bytes > fileBytes - w->fileOffset())
      return llvm::createStringError(
          llvm::inconvertibleErrorCode(),
          llvm::formatv("{0}: weight @{1} ({2} bytes at offset {3}) lies outside the {4}-byte file", fileName,
                        w->name(), bytes, w->fileOffset(), fileBytes));
  }
  return llvm::Error::success();
}

llvm::Error materializeWeight(const Weight &w, llvm::StringRef file, std::vector<char> &out, unsigned rank) {
  const TensorType &type = w.type();
  size_t n = type.numElements();
  out.resize(type.byteSize());
  switch (w.expr()) {
  case WeightExpr::File:
    if (w.fileOffset() + out.size() > file.size())
      return llvm::createStringError(llvm::inconvertibleErrorCode(), "weight @%s lies outside the weights file",
                                     w.name().c_str());
    std::memcpy(out.data(), file.data() + w.fileOffset(), out.size());
    return llvm::Error::success();
  case WeightExpr::ScaleColumns: {
    std::vector<char> mat, gain;
    if (auto e = materializeWeight(*w.operands()[0], file, mat, rank)) return e;
    if (auto e = materializeWeight(*w.operands()[1], file, gain, rank)) return e;
    DType matType = w.operands()[0]->type().dtype, gainType = w.operands()[1]->type().dtype;
    int64_t cols = type.shape[1];
    for (size_t i = 0; i < n; ++i)
      storeElement(out.data(), type.dtype, i,
                   loadElement(mat.data(), matType, i) * loadElement(gain.data(), gainType, i % cols));
    return llvm::Error::success();
  }
  case WeightExpr::Convert: {
    std::vector<char> src;
    if (auto e = materializeWeight(*w.operands()[0], file, src, rank)) return e;
    DType srcType = w.operands()[0]->type().dtype;
    for (size_t i = 0; i < n; ++i) storeElement(out.data(), type.dtype, i, loadElement(src.data(), srcType, i));
    return llvm::Error::success();
  }
  case WeightExpr::ShardRows:
  case WeightExpr::ShardColumns: {
    // The shard's shape is the block's; the whole matrix keeps its dtype.
    std::vector<char> whole;
    if (auto e = materializeWeight(*w.operands()[0], file, whole, rank)) return e;
    size_t elementBytes = byteSize(type.dtype);
    size_t rows = type.shape[0], cols = type.shape[1];
    size_t wholeCols = w.operands()[0]->type().shape[1];
    size_t rowBytes = cols * elementBytes;
    bool byRows = w.expr() == WeightExpr::ShardRows;
    size_t firstRow = byRows ? rank * rows : 0, firstCol = byRows ? 0 : rank * cols;
    if ((firstRow + rows) * wholeCols * elementBytes > whole.size() || firstCol + cols > wholeCols)
      return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                     "weight @%s: rank %u's shard lies outside @%s", w.name().c_str(), rank,
                                     w.operands()[0]->name().c_str());
    for (size_t r = 0; r < rows; ++r)
      std::memcpy(out.data() + r * rowBytes,
                  whole.data() + ((firstRow + r) * wholeCols + firstCol) * elementBytes, rowBytes);
    return llvm::Error::success();
  }
  }
  return llvm::Error::success();
}

llvm::Expected<std::unique_ptr<WeightStore>> WeightStore::create(const Module &m, llvm::StringRef file,
                                                                 llvm::StringRef fileName, unsigned rank) {
  if (auto e = checkWeightsFit(m, file.size(), fileName)) return e;
  auto store = std::unique_ptr<WeightStore>(new WeightStore());
  store->file_ = file;
  for (const auto &w : m.weights()) {
    if (w->expr() == WeightExpr::File) continue;
    if (auto e = materializeWeight(*w, file, store->computed_[w.get()], rank)) return e;
  }
  return store;
}

const char *WeightStore::data(const Weight *w) const {
  if (w->expr() == WeightExpr::File) return file_.data() + w->fileOffset();
  auto it = computed_.find(w);
  assert(it != computed_.end() && "weight not in this store");
  return it->second.data();
}

} // namespace llamac::runtime
