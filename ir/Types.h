//===- ir/Types.h - Element types, shapes and tensor types ------*- C++ -*-===//
//
// The IR is typed: every value has a TensorType, an element DType and a Shape.
// A scalar is a tensor of rank 0 (`tensor<i32>`).
//
//===----------------------------------------------------------------------===//
#pragma once

#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringRef.h"

#include <cstdint>
#include <optional>
#include <string>

namespace llamac::ir {

enum class DType : uint8_t { f32, f16, bf16, i8, i32 };

/// "f32", "f16", ...: the spelling used in the text IR and on the command line.
llvm::StringRef toString(DType dtype);
std::optional<DType> parseDType(llvm::StringRef text);
/// Bytes per element.
unsigned byteSize(DType dtype);
bool isFloat(DType dtype);

using Shape = llvm::SmallVector<int64_t, 4>;

struct TensorType {
  DType dtype = DType::f32;
  Shape shape;

  TensorType() = default;
  TensorType(DType dtype, Shape shape) : dtype(dtype), shape(std::move(shape)) {}
  static TensorType scalar(DType dtype) { return TensorType(dtype, {}); }

  unsigned rank() const { return shape.size(); }
  int64_t numElements() const;
  uint64_t byteSize() const { return uint64_t(numElements()) * ir::byteSize(dtype); }
  /// `tensor<768x2048xf16>`, `tensor<i32>`.
  std::string str() const;

  friend bool operator==(const TensorType &a, const TensorType &b) {
    return a.dtype == b.dtype && a.shape == b.shape;
  }
};

} // namespace llamac::ir
