//===- ir/Printer.h - The text form of the IR --------------------*- C++ -*-===//
//
//   module @stories260K {
//     kv_cache layers = 5, seq_len = 512, kv_dim = 32, dtype = f32
//     weight @l0.wq : tensor<64x64xf32> = file 33052
//     weight @l0.wq.n : tensor<64x64xf32> = scale_columns(@l0.wq, @l0.rms_att)
//     func @decode(%token : tensor<i32>, %pos : tensor<i32>) -> tensor<512xf32> {
//       %0 = embedding @tok_embeddings, %token : tensor<64xf32>
//       %1 = rmsnorm %0, @l0.rms_att {eps = 1e-05} : tensor<64xf32>
//       kv_write %5, %6, %pos {layer = 0}
//       return %30
//     }
//   }
//
// After memory planning the module has an `arena N bytes` line and every
// result carries its offset: `... : tensor<64xf32> at 256`. The form is
// deterministic and parses back (ir/Parser.h) to a module that prints the same.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "ir/IR.h"

#include "llvm/Support/raw_ostream.h"

namespace llamac::ir {

void print(const Module &m, llvm::raw_ostream &os);
void print(const Function &f, llvm::raw_ostream &os);
std::string toString(const Module &m);
/// One op in the function's numbering, without indentation or newline.
std::string toString(const Op &op, const ValueNumbering &names);
/// Shortest decimal text that reads back as the same double.
std::string formatDouble(double v);

} // namespace llamac::ir
