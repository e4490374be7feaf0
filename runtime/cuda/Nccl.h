//===- runtime/cuda/Nccl.h - NCCL, opened at run time -------------*- C++ -*-===//
//
// Tensor parallel plans meet across GPUs through NCCL collectives. Like the
// CUDA driver and NVRTC, libnccl is opened with dlopen, so llamac neither
// links it nor needs it for plans that are not partitioned. nccl.h is used for
// its types only. Nccl::load() looks, in order, at $LLAMAC_NCCL (a path), the
// bundle's lib/ next to the executable's folder (scripts/bundle.sh), the
// default search path (LD_LIBRARY_PATH, ld.so.cache) and the CUDA toolkit's
// lib64.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "llvm/Support/Error.h"

#include <nccl.h>

#include <string>

namespace llamac::runtime::cuda {

class Nccl {
public:
  /// Opens libnccl.so.2 once per process; later calls return the same
  /// library or the same error. Safe to call from any thread.
  static llvm::Expected<const Nccl &> load();

  /// Success, or "ncclAllReduce: unhandled cuda error (...)" naming `what`.
  llvm::Error check(ncclResult_t result, llvm::StringRef what) const;

  /// The library's version (NCCL_VERSION_CODE: 22803 for 2.28.3) and where it came from.
  int version = 0;
  std::string path;
  /// "2.28.3".
  std::string versionText() const;

  decltype(&::ncclGetVersion) getVersion = nullptr;
  decltype(&::ncclGetErrorString) getErrorString = nullptr;
  decltype(&::ncclGetLastError) getLastError = nullptr; // null before NCCL 2.13
  decltype(&::ncclCommInitAll) commInitAll = nullptr;
  decltype(&::ncclCommDestroy) commDestroy = nullptr;
  decltype(&::ncclAllReduce) allReduce = nullptr;
  decltype(&::ncclAllGather) allGather = nullptr;

private:
  Nccl() = default;
};

} // namespace llamac::runtime::cuda
