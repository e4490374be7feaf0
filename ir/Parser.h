//===- ir/Parser.h - Reading the text form of the IR -------------*- C++ -*-===//
#pragma once

#include "ir/IR.h"

namespace llamac::ir {

/// Parses the form ir/Printer.h writes, and verifies the result. Errors read
/// "<bufferName>:<line>:<column>: <what was expected>, found '<token>'".
/// `//` starts a comment that runs to the end of the line.
llvm::Expected<std::unique_ptr<Module>> parseModule(llvm::StringRef text, llvm::StringRef bufferName = "<ir>");

} // namespace llamac::ir
