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

namespace llamac::test {

constexpr float kTestEps = 1e-5f;
constexpr float kTestTheta = 10000.0f;

using codegen::argmaxKernel;
using codegen::argmaxKeysKernel;
using codegen::attentionCombineKernel;
using codegen::attentionKernel;
using codegen::attentionSplitKernel;
using codegen::addKernel;
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
inline KernelWrapper matmulKernel(int n, int k, ir::DType w, bool rms) {
  return codegen::matmulKernel(n, k, w, rms, kTestEps);
}
inline KernelWrapper matmulAddKernel(int n, int k, ir::DType w, bool rms) {
  return codegen::matmulAddKernel(n, k, w, rms, kTestEps);
}
inline KernelWrapper matmulSwigluKernel(int n, int k, ir::DType w, bool rms) {
  return codegen::matmulSwigluKernel(n, k, w, rms, kTestEps);
}
inline KernelWrapper matmulQkvKernel(int nq, int nk, int nv, int k, ir::DType w, bool rms) {
  return codegen::matmulQkvKernel(nq, nk, nv, k, w, rms, kTestEps);
}
inline KernelWrapper matmulQkvRopeKvKernel(int nq, int nk, int k, int headSize, ir::DType w, bool rms) {
  return codegen::matmulQkvRopeKvKernel(nq, nk, k, headSize, w, rms, kTestEps, kTestTheta);
}
inline KernelWrapper matmulArgmaxKernel(int n, int k, ir::DType w, bool rms) {
  return codegen::matmulArgmaxKernel(n, k, w, rms, kTestEps);
}
inline KernelWrapper ropeKernel(int n, int headSize) { return codegen::ropeKernel(n, headSize, kTestTheta); }

} // namespace llamac::test
