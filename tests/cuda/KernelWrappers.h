//===- tests/cuda/KernelWrappers.h - The code generator's wrappers, for tests ===//
//
// The kernel tests build their programs from codegen/KernelWrappers.h, the
// same functions the code generator uses, so what they compile for every
// architecture and run on the GPU is exactly what plans hold. This header
// only fixes eps and theta to the values the tests' references use.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "codegen/KernelWrappers.h"
#include "codegen/kernels/gemv.cuh"

namespace llamac::test {

constexpr float kTestEps = 1e-5f;
constexpr float kTestTheta = 10000.0f;

using codegen::argmaxKernel;
using codegen::argmaxKeysChainedKernel;
using codegen::argmaxKeysKernel;
using codegen::attentionKernel;
using codegen::attentionSplitKernel;
using codegen::addKernel;
using codegen::advanceGreedyKernel;
using codegen::cudaTypeName;
using codegen::embeddingKernel;
using codegen::KernelWrapper;
using codegen::kernelHeaders;
using codegen::kvWriteKernel;
using codegen::programSource;
using codegen::siluMulKernel;
using codegen::sliceKernel;

inline KernelWrapper rmsnormKernel(int d, ir::DType gain) { return codegen::rmsnormKernel(d, gain, kTestEps); }
inline KernelWrapper rmsNormalizeKernel(int d) { return codegen::rmsNormalizeKernel(d, kTestEps); }
/// The warps per task the code generator picks (launch::gemvSplit) for `n`
/// rows of `k` in tasks of `rowsPerTask` rows.
inline int defaultSplit(int n, int k, ir::DType w, int rowsPerTask) {
  return int(launch::gemvSplit(unsigned(n), unsigned(k), ir::byteSize(w), unsigned(rowsPerTask)));
}

inline KernelWrapper matmulKernel(int n, int k, ir::DType w, bool rms, int split) {
  return codegen::matmulKernel(n, k, w, rms, kTestEps, split);
}
inline KernelWrapper matmulAddKernel(int n, int k, ir::DType w, bool rms, int split) {
  return codegen::matmulAddKernel(n, k, w, rms, kTestEps, split);
}
inline KernelWrapper matmulSwigluKernel(int n, int k, ir::DType w, bool rms, int split) {
  return codegen::matmulSwigluKernel(n, k, w, rms, kTestEps, split);
}
inline KernelWrapper matmulQkvKernel(int nq, int nk, int nv, int k, ir::DType w, bool rms, int split) {
  return codegen::matmulQkvKernel(nq, nk, nv, k, w, rms, kTestEps, split);
}
inline KernelWrapper matmulQkvRopeKvKernel(int nq, int nk, int k, int headSize, ir::DType w, bool rms, int split) {
  return codegen::matmulQkvRopeKvKernel(nq, nk, k, headSize, w, rms, kTestEps, kTestTheta, split);
}
inline KernelWrapper matmulArgmaxKernel(int n, int k, ir::DType w, bool rms, int split,
                                        bool advancesPosition = false) {
  return codegen::matmulArgmaxKernel(n, k, w, rms, kTestEps, split, advancesPosition);
}
inline KernelWrapper ropeKernel(int n, int headSize) { return codegen::ropeKernel(n, headSize, kTestTheta); }

} // namespace llamac::test
