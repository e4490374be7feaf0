//===- codegen/KernelWrappers.h - One extern "C" wrapper per kernel -------===//
//
// The code generator instantiates the templates of codegen/kernels/ through a
// small `extern "C" __global__` wrapper per instantiation, which includes the
// op's .cuh and calls its template with the sizes baked in. The kernel tests
// build their programs from the same functions, so what they compile for
// every architecture and run on the GPU is exactly what plans hold.
//
// Each wrapper's kernel name encodes its sizes ("matmul_n257_k250_f16_rms"),
// so one program can hold many instantiations of one op.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "ir/Types.h"

#include "llvm/ADT/ArrayRef.h"

#include <string>
#include <utility>
#include <vector>

namespace llamac::codegen {

/// Who waits for the kernel before this one (common.cuh: programmatic
/// dependent launch): the wrapper, before calling the template, or the
/// template itself, as the matmul family does in warpDots after issuing its
/// first weight loads, and attention after loading the cache rows of earlier
/// steps. FirstOfStep: the wrapper waits, and only then lets the next kernel
/// launch, so that every kernel after it starts after every kernel of the
/// step before has finished (attention.cuh reads what they wrote before its
/// wait; the code generator checks that such a kernel starts the step).
/// (In a chained step the classifier, InTemplate, lets the next step's
/// kernels launch only after every kernel of its step but itself and the
/// token's kernel has finished: advance.cuh's advance_position.)
enum class Wait { InWrapper, InTemplate, FirstOfStep };

struct KernelWrapper {
  std::string file;   // "matmul.cuh"
  std::string name;   // the extern "C" kernel name
  unsigned threads = 0; // __launch_bounds__, the block size it must be launched with
  std::string code;   // the wrapper's definition
  // The parts of `code`, for the persistent kernel, which calls the same
  // template as one phase (persistentKernel):
  std::string params;     // "const float* x, const float* w, float* y"
  std::string call;       // "llamac::matmul<...>(x, w, y, 1e-5f)"
  Wait waits = Wait::InWrapper;
  // Set only by persistentKernel: lines before the includes, and files
  // included after `file`.
  std::string prelude;
  std::vector<std::string> moreFiles;
};

/// "float", "llamac::f16", "llamac::bf16".
std::string cudaTypeName(ir::DType dtype);

KernelWrapper embeddingKernel(int d, ir::DType table);
KernelWrapper rmsnormKernel(int d, ir::DType gain, float eps);
KernelWrapper rmsNormalizeKernel(int d, float eps);
// The matmul family takes `split`, the warps per row (or row pair): 1, 2, 4
// or 8. launch::gemvSplit picks it from the shape; the launch shape must be
// computed with the same value.
KernelWrapper matmulKernel(int n, int k, ir::DType weights, bool rms, float eps, int split);
KernelWrapper matmulAddKernel(int n, int k, ir::DType weights, bool rms, float eps, int split);
KernelWrapper matmulSwigluKernel(int n, int k, ir::DType weights, bool rms, float eps, int split);
KernelWrapper matmulQkvKernel(int nq, int nk, int nv, int k, ir::DType weights, bool rms, float eps, int split);
KernelWrapper matmulQkvRopeKvKernel(int nq, int nk, int k, int headSize, ir::DType weights, bool rms,
                                    float eps, float theta, int split, ir::DType kv = ir::DType::f32);
/// `advancesPosition`: the chained step's classifier, which also takes `pos`
/// (advance.cuh's form 2).
KernelWrapper matmulArgmaxKernel(int n, int k, ir::DType weights, bool rms, float eps, int split,
                                 bool advancesPosition = false);
/// `threads`: the block size (launch::kArgmaxThreads, or the persistent kernel's).
KernelWrapper argmaxKeysKernel(int partialKeys, int threads);
/// Tensor parallelism: one rank's classifier key, with a global row index.
KernelWrapper argmaxShardKeyKernel(int partialKeys, int rows);
KernelWrapper ropeKernel(int n, int headSize, float theta);
// `kv`: the KV cache dtype (f32, f16 or bf16).
KernelWrapper kvWriteKernel(int nk, ir::DType kv = ir::DType::f32);
KernelWrapper attentionKernel(int h, int kvh, int headSize, int seqLen, ir::DType kv = ir::DType::f32);
// `parts`: blocks per span of 128 x parts positions, a cluster of them where
// there are clusters (attention.cuh); the launch is launch::attentionSplit(h,
// seqLen, parts).
KernelWrapper attentionSplitKernel(int h, int kvh, int headSize, int seqLen, ir::DType kv = ir::DType::f32,
                                   int parts = 1);
KernelWrapper siluMulKernel(int n);
KernelWrapper addKernel(int n);
KernelWrapper sliceKernel(int offset, int size);
KernelWrapper argmaxKernel(int n);
/// Not ops: chain greedy steps on the device (advance.cuh's two forms).
KernelWrapper advanceGreedyKernel();
/// The chained step's last kernel: argmax_keys, the history, the token and
/// the next step's embedding (a row of d elements of `table`).
KernelWrapper argmaxKeysChainedKernel(int partialKeys, int d, ir::DType table);

/// One launch of a plan function, for persistentKernel: the kernel, its
/// grid, and one C++ expression per parameter of the wrapper (in terms of the
/// persistent kernel's parameters arena_, weights_, kv_, token_ and pos_).
struct PersistentPhase {
  const KernelWrapper *kernel;
  unsigned gridX, gridY;
  std::vector<std::string> args;
  std::string comment; // the IR op, one line
};

/// The persistent kernel (persistent.cuh) `name`, running `phases` in order
/// with its phase counters at arena offset `countersOffset`. Every phase's
/// kernel must take launch::kPersistentThreads threads.
KernelWrapper persistentKernel(const std::string &name, llvm::ArrayRef<PersistentPhase> phases,
                               unsigned long long countersOffset);

/// One translation unit: the includes of all wrappers, then their code.
std::string programSource(llvm::ArrayRef<KernelWrapper> wrappers);

/// The embedded kernel files as NVRTC headers: (include name, text).
std::vector<std::pair<std::string, std::string>> kernelHeaders();

/// One translation unit that needs no headers: the wrappers' .cuh files
/// inlined (each once, in include order), then the wrappers. Plans store
/// this, so llamarun can recompile a kernel without the templates at hand.
std::string selfContainedSource(llvm::ArrayRef<KernelWrapper> wrappers);

} // namespace llamac::codegen
