#include "ir/Types.h"

#include "llvm/ADT/StringSwitch.h"

namespace llamac::ir {

llvm::StringRef toString(DType dtype) {
  switch (dtype) {
  case DType::f32: return "f32";
  case DType::f16: return "f16";
  case DType::bf16: return "bf16";
  case DType::i8: return "i8";
  case DType::i32: return "i32";
  }
  return "?";
}

std::optional<DType> parseDType(llvm::StringRef text) {
  return llvm::StringSwitch<std::optional<DType>>(text)
      .Case("f32", DType::f32)
      .Case("f16", DType::f16)
      .Case("bf16", DType::bf16)
      .Case("i8", DType::i8)
      .Case("i32", DType::i32)
      .Default(std::nullopt);
}

unsigned byteSize(DType dtype) {
  switch (dtype) {
  case DType::f32: case DType::i32: return 4;
  case DType::f16: case DType::bf16: return 2;
  case DType::i8: return 1;
  }
  return 0;
}

bool isFloat(DType dtype) {
  return dtype == DType::f32 || dtype == DType::f16 || dtype == DType::bf16;
}

int64_t TensorType::numElements() const {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  return n;
}

std::string TensorType::str() const {
  std::string s = "tensor<";
  for (int64_t d : shape)
    s += std::to_string(d) + "x";
  s += toString(dtype).str();
  return s + ">";
}

} // namespace llamac::ir
