#pragma once

#include "ir/IR.h"

namespace llamac::ir {

/// Checks the invariants every pass must keep: each operand is defined before
/// use by this function (or is a weight of this module), each op matches the
/// op table and its stored result type equals the inferred one, KV cache
/// accesses fit the module's cache, derived weights are well-typed, and
/// planned arena offsets (when present) keep every value inside the arena.
llvm::Error verify(const Module &m);

} // namespace llamac::ir
