//===- runtime/Weights.h - Weight bytes for a module ------------*- C++ -*-===//
//
// A module's weights point into one weights file (the checkpoint before
// compilation, the plan's sidecar after) or are computed from other weights
// (ir::WeightExpr). This file turns them into bytes: the CPU executor reads a
// WeightStore, and llamac streams materializeWeight() into the sidecar one
// tensor at a time, so a 16 GB model never sits in memory twice.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "ir/IR.h"
#include "runtime/Half.h"

#include "llvm/ADT/DenseMap.h"

#include <vector>

namespace llamac::runtime {

inline float loadElement(const char *base, ir::DType dtype, size_t i) {
  switch (dtype) {
  case ir::DType::f32: {
    float f;
    std::memcpy(&f, base + 4 * i, 4);
    return f;
  }
  case ir::DType::f16: {
    uint16_t h;
    std::memcpy(&h, base + 2 * i, 2);
    return halfToFloat(h);
  }
  case ir::DType::bf16: {
    uint16_t h;
    std::memcpy(&h, base + 2 * i, 2);
    return bf16ToFloat(h);
  }
  case ir::DType::i8: return float(int8_t(base[i]));
  case ir::DType::i32: {
    int32_t v;
    std::memcpy(&v, base + 4 * i, 4);
    return float(v);
  }
  }
  return 0;
}

inline void storeElement(char *base, ir::DType dtype, size_t i, float value) {
  switch (dtype) {
  case ir::DType::f32: std::memcpy(base + 4 * i, &value, 4); return;
  case ir::DType::f16: {
    uint16_t h = floatToHalf(value);
    std::memcpy(base + 2 * i, &h, 2);
    return;
  }
  case ir::DType::bf16: {
    uint16_t h = floatToBf16(value);
    std::memcpy(base + 2 * i, &h, 2);
    return;
  }
  case ir::DType::i8: base[i] = char(int8_t(value)); return;
  case ir::DType::i32: {
    int32_t v = int32_t(value);
    std::memcpy(base + 4 * i, &v, 4);
    return;
  }
  }
}

/// Checks that every file weight of `m` lies inside a weights file of
/// `fileBytes` bytes; the error names the file and the weight.
llvm::Error checkWeightsFit(const ir::Module &m, uint64_t fileBytes, llvm::StringRef fileName);

/// The bytes of `w` in its own dtype: a copy of the file's bytes, or the
/// evaluated expression. Shards (ir::WeightExpr::ShardRows/ShardColumns) are
/// rank `rank`'s block.
llvm::Error materializeWeight(const ir::Weight &w, llvm::StringRef file, std::vector<char> &out,
                              unsigned rank = 0);

/// Every weight of a module, ready to read: file weights point into the
/// (memory-mapped) file, computed ones into buffers evaluated once here.
/// In a tensor parallel module, the store holds rank `rank`'s shards.
class WeightStore {
public:
  static llvm::Expected<std::unique_ptr<WeightStore>> create(const ir::Module &m, llvm::StringRef file,
                                                             llvm::StringRef fileName, unsigned rank = 0);
  const char *data(const ir::Weight *w) const;

private:
  llvm::StringRef file_;
  llvm::DenseMap<const ir::Weight *, std::vector<char>> computed_;
};

} // namespace llamac::runtime
