//===- runtime/cuda/Nvrtc.h - CUDA C++ to cubin or PTX, opened at run time -===//
//
// NVRTC compiles the generated kernels: `llamac compile` for each target
// architecture, and `llamarun` when a plan holds no cubin for the GPU it finds.
// Like the driver, libnvrtc is opened with dlopen (libnvrtc.so.13, then .12,
// then libnvrtc.so, in the default search path and in /usr/local/cuda/lib64),
// so the binaries start without the CUDA toolkit.
//
// NVRTC may be used from several threads at once as long as each program
// object stays on one thread; compileCuda() makes its own program, so calls
// for different architectures can run in parallel.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <nvrtc.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace llamac::runtime::cuda {

struct CompiledKernel {
  std::string arch;   // what was asked for: "sm_90" gives a cubin, "compute_90" PTX
  bool isPtx = false;
  std::string image;  // the cubin's bytes, or the PTX text
  /// NVRTC's messages on success, trailing whitespace removed. Non-empty means
  /// the compiler warned: our kernels are expected to compile silently.
  std::string log;
};

struct NvrtcVersion {
  int major = 0;
  int minor = 0;
};

class Nvrtc {
public:
  /// Opens libnvrtc once per process; later calls return the same result.
  static llvm::Expected<const Nvrtc &> load();

  Nvrtc(const Nvrtc &) = delete;
  Nvrtc &operator=(const Nvrtc &) = delete;

  NvrtcVersion version() const;
  /// The SM numbers this NVRTC can target (75, 80, 86, ...).
  std::vector<int> supportedArchs() const;
  /// Where the library was found ("libnvrtc.so.13").
  llvm::StringRef libraryName() const { return library; }

  llvm::Expected<CompiledKernel> compile(llvm::StringRef source, llvm::StringRef name,
                                         llvm::StringRef arch,
                                         llvm::ArrayRef<std::string> extraOptions,
                                         llvm::ArrayRef<std::pair<std::string, std::string>> headers) const;

  decltype(&::nvrtcGetErrorString) getErrorString = nullptr;
  decltype(&::nvrtcVersion) getVersion = nullptr;
  decltype(&::nvrtcGetNumSupportedArchs) getNumSupportedArchs = nullptr;
  decltype(&::nvrtcGetSupportedArchs) getSupportedArchs = nullptr;
  decltype(&::nvrtcCreateProgram) createProgram = nullptr;
  decltype(&::nvrtcDestroyProgram) destroyProgram = nullptr;
  decltype(&::nvrtcCompileProgram) compileProgram = nullptr;
  decltype(&::nvrtcGetProgramLogSize) getProgramLogSize = nullptr;
  decltype(&::nvrtcGetProgramLog) getProgramLog = nullptr;
  decltype(&::nvrtcGetPTXSize) getPTXSize = nullptr;
  decltype(&::nvrtcGetPTX) getPTX = nullptr;
  decltype(&::nvrtcGetCUBINSize) getCUBINSize = nullptr;
  decltype(&::nvrtcGetCUBIN) getCUBIN = nullptr;

private:
  Nvrtc() = default;
  std::string library;
};

/// Compiles one translation unit of CUDA C++ with -std=c++17 -default-device
/// and precise math (no fast math: kernels must match the CPU executor).
/// `name` names the program in messages; `arch` is "sm_XY" for a cubin or
/// "compute_XY" for PTX; `extraOptions` are passed on as they are (such as
/// -lineinfo); `headers` are (include name, contents) pairs that
/// `#include "name"` resolves to. On failure the error holds NVRTC's log.
llvm::Expected<CompiledKernel> compileCuda(
    llvm::StringRef source, llvm::StringRef name, llvm::StringRef arch,
    llvm::ArrayRef<std::string> extraOptions = {},
    llvm::ArrayRef<std::pair<std::string, std::string>> headers = {});

/// The version of the NVRTC that compileCuda would use.
llvm::Expected<NvrtcVersion> nvrtcVersion();

} // namespace llamac::runtime::cuda
