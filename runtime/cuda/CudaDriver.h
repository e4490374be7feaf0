//===- runtime/cuda/CudaDriver.h - The CUDA driver API, opened at run time -===//
//
// llamac never links libcuda: the same binaries must start on a machine without
// an NVIDIA driver and fall back to the CPU there. CudaDriver::load() dlopens
// libcuda.so.1 once per process, resolves every entry point through
// cuGetProcAddress at the ABI version its field type was written for (see
// CudaDriverEntryPoints.def), and calls cuInit(0).
//
// The fields are plain function pointers with the driver's own signatures:
//
//   auto driver = CudaDriver::load();
//   if (!driver) return driver.takeError();
//   CUdeviceptr buffer;
//   if (auto err = driver->check(driver->memAlloc(&buffer, bytes), "cuMemAlloc"))
//     return err;
//
// cuda.h is used for its types and enums only.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <cuda.h>
#include <cudaTypedefs.h>

#include <cstddef>
#include <memory>
#include <string>

namespace llamac::runtime::cuda {

/// What the runtime and the code generator need to know about a device.
struct DeviceInfo {
  int ordinal = 0;
  std::string name;            // "NVIDIA H100 80GB HBM3"
  int computeMajor = 0;        // 9 for sm_90
  int computeMinor = 0;
  int multiprocessors = 0;
  size_t totalMemoryBytes = 0;
  int l2CacheBytes = 0;
  int maxSharedMemoryPerBlockOptin = 0; // what cuFuncSetAttribute may raise a kernel to
  int maxThreadsPerBlock = 0;

  /// "sm_90": the NVRTC --gpu-architecture for this device.
  std::string smArch() const;
};

class CudaDriver {
public:
  /// Opens libcuda.so.1 and initializes CUDA, once per process; later calls
  /// return the same driver or the same error. Safe to call from any thread.
  static llvm::Expected<const CudaDriver &> load();

  /// Opens the driver library at `library` (a soname or a path), without
  /// caching. load() uses it; tests use it to exercise the error paths.
  static llvm::Expected<std::unique_ptr<CudaDriver>> open(llvm::StringRef library);

  CudaDriver(const CudaDriver &) = delete;
  CudaDriver &operator=(const CudaDriver &) = delete;
  ~CudaDriver();

  /// Success, or an error such as
  /// "cuLaunchKernel(k12_matmul_add): CUDA_ERROR_ILLEGAL_ADDRESS (an illegal memory access was encountered)".
  llvm::Error check(CUresult result, llvm::StringRef what) const;

  /// "CUDA_ERROR_NO_DEVICE (no CUDA-capable device is detected)".
  std::string describe(CUresult result) const;

  /// The driver's CUDA version, 1000 * major + 10 * minor (12080 for 12.8).
  int version() const { return driverVersion; }

  /// Number of devices, and the details of one of them.
  llvm::Expected<int> deviceCount() const;
  llvm::Expected<DeviceInfo> deviceInfo(int ordinal) const;

  /// Loads a cubin or a NUL-free PTX text. On failure the error carries the
  /// JIT's error log; `infoLog`, when given, receives its info log.
  llvm::Expected<CUmodule> loadModule(llvm::StringRef image, llvm::StringRef what,
                                      std::string *infoLog = nullptr) const;

#define LLAMAC_CUDA_ENTRY(member, symbol, version) PFN_##symbol##_v##version member = nullptr;
#include "runtime/cuda/CudaDriverEntryPoints.def"

private:
  CudaDriver() = default;

  void *library = nullptr;
  int driverVersion = 0;
};

} // namespace llamac::runtime::cuda
