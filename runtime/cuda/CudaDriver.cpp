//===- runtime/cuda/CudaDriver.cpp - The CUDA driver API, opened at run time ===//

#include "runtime/cuda/CudaDriver.h"

#include "llvm/Support/FormatVariadic.h"

#include <dlfcn.h>

#include <mutex>

namespace llamac::runtime::cuda {

namespace {

/// cuGetProcAddress in its CUDA 12 form (the one with symbolStatus); CUDA 11
/// drivers lack it, and llamac needs CUDA 12 features anyway.
constexpr const char *kGetProcAddressSymbol = "cuGetProcAddress_v2";
constexpr int kMinimumDriverVersion = 12000;

std::string versionText(int version) {
  return llvm::formatv("{0}.{1}", version / 1000, (version % 1000) / 10).str();
}

llvm::Error makeError(const llvm::Twine &message) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), message);
}

} // namespace

std::string DeviceInfo::smArch() const {
  return llvm::formatv("sm_{0}{1}", computeMajor, computeMinor).str();
}

CudaDriver::~CudaDriver() {
  // Only drivers from open() get here; the one load() caches lives until the
  // process ends, because modules and contexts made through it may be used by
  // other static objects' destructors.
  if (library)
    dlclose(library);
}

llvm::Expected<std::unique_ptr<CudaDriver>> CudaDriver::open(llvm::StringRef libraryName) {
  std::string name = libraryName.str();
  void *handle = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char *why = dlerror();
    return makeError(llvm::Twine(name) + " not found: no NVIDIA driver on this machine (" +
                     (why ? why : "dlopen failed") + ")");
  }
  std::unique_ptr<CudaDriver> driver(new CudaDriver());
  driver->library = handle;

  // Every driver exports these under their plain names; with the error names
  // at hand, the failures below can say what went wrong.
  auto getVersion = reinterpret_cast<PFN_cuDriverGetVersion_v2020>(dlsym(handle, "cuDriverGetVersion"));
  if (!getVersion)
    return makeError(llvm::Twine(name) + ": has no cuDriverGetVersion, so it is not a CUDA driver library");
  driver->getErrorName = reinterpret_cast<PFN_cuGetErrorName_v6000>(dlsym(handle, "cuGetErrorName"));
  driver->getErrorString = reinterpret_cast<PFN_cuGetErrorString_v6000>(dlsym(handle, "cuGetErrorString"));
  if (CUresult result = getVersion(&driver->driverVersion); result != CUDA_SUCCESS)
    return makeError(llvm::Twine(name) + ": cuDriverGetVersion failed: " + driver->describe(result));
  if (driver->driverVersion < kMinimumDriverVersion)
    return makeError(llvm::Twine(name) + ": the NVIDIA driver supports CUDA " +
                     versionText(driver->driverVersion) + ", llamac needs CUDA " +
                     versionText(kMinimumDriverVersion) + " or newer (update the driver)");

  auto getProcAddress = reinterpret_cast<PFN_cuGetProcAddress_v12000>(dlsym(handle, kGetProcAddressSymbol));
  if (!getProcAddress)
    return makeError(llvm::Twine(name) + ": has no " + kGetProcAddressSymbol);

  auto resolve = [&](const char *symbol, int abiVersion, void **slot) -> llvm::Error {
    CUdriverProcAddressQueryResult status = CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
    void *found = nullptr;
    CUresult result = getProcAddress(symbol, &found, abiVersion, CU_GET_PROC_ADDRESS_LEGACY_STREAM, &status);
    std::string prefix = name + " (CUDA " + versionText(driver->driverVersion) + "): ";
    if (result != CUDA_SUCCESS)
      return makeError(prefix + "cuGetProcAddress(" + symbol + ") failed: " + driver->describe(result));
    if (status == CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT)
      return makeError(prefix + symbol + " is newer than the ABI of CUDA " + versionText(abiVersion) +
                       " asked for");
    if (status != CU_GET_PROC_ADDRESS_SUCCESS || !found)
      return makeError(prefix + symbol + " not found (ABI of CUDA " + versionText(abiVersion) + ")");
    *slot = found;
    return llvm::Error::success();
  };

#define LLAMAC_CUDA_ENTRY(member, symbol, version)                                                 \
  if (auto err = resolve(#symbol, version, reinterpret_cast<void **>(&driver->member)))         \
    return err;
#include "runtime/cuda/CudaDriverEntryPoints.def"

  CUresult initResult = driver->init(0);
  if (initResult != CUDA_SUCCESS)
    return makeError("cuInit failed: " + driver->describe(initResult));
  return driver;
}

llvm::Expected<const CudaDriver &> CudaDriver::load() {
  // The outcome, good or bad, is decided once; an Error cannot be copied, so a
  // failure is kept as its message and rebuilt for each caller.
  static std::once_flag once;
  static const CudaDriver *driver = nullptr; // never destroyed, on purpose
  static std::string failure;
  std::call_once(once, [] {
    auto opened = open("libcuda.so.1");
    if (opened)
      driver = opened->release();
    else
      failure = llvm::toString(opened.takeError());
  });
  if (!driver)
    return makeError(failure);
  return *driver;
}

std::string CudaDriver::describe(CUresult result) const {
  const char *name = nullptr;
  const char *text = nullptr;
  if (!getErrorName || getErrorName(result, &name) != CUDA_SUCCESS || !name)
    return llvm::formatv("CUDA error {0}", int(result)).str();
  if (!getErrorString || getErrorString(result, &text) != CUDA_SUCCESS || !text)
    return name;
  return llvm::formatv("{0} ({1})", name, text).str();
}

llvm::Error CudaDriver::check(CUresult result, llvm::StringRef what) const {
  if (result == CUDA_SUCCESS)
    return llvm::Error::success();
  return makeError(what + ": " + describe(result));
}

llvm::Expected<int> CudaDriver::deviceCount() const {
  int count = 0;
  if (auto err = check(deviceGetCount(&count), "cuDeviceGetCount"))
    return err;
  return count;
}

llvm::Expected<DeviceInfo> CudaDriver::deviceInfo(int ordinal) const {
  DeviceInfo info;
  info.ordinal = ordinal;
  CUdevice device;
  if (auto err = check(deviceGet(&device, ordinal), llvm::formatv("cuDeviceGet({0})", ordinal).str()))
    return err;

  char name[256] = {};
  if (auto err = check(deviceGetName(name, sizeof(name) - 1, device), "cuDeviceGetName"))
    return err;
  info.name = name;
  if (auto err = check(deviceTotalMem(&info.totalMemoryBytes, device), "cuDeviceTotalMem"))
    return err;

  struct {
    CUdevice_attribute attribute;
    int *field;
    const char *what;
  } attributes[] = {
      {CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, &info.computeMajor, "compute capability major"},
      {CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, &info.computeMinor, "compute capability minor"},
      {CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, &info.multiprocessors, "multiprocessor count"},
      {CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE, &info.l2CacheBytes, "L2 cache size"},
      {CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, &info.maxSharedMemoryPerBlockOptin,
       "max shared memory per block (opt-in)"},
      {CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK, &info.maxThreadsPerBlock, "max threads per block"},
  };
  for (auto &entry : attributes)
    if (auto err = check(deviceGetAttribute(entry.field, entry.attribute, device),
                         (llvm::Twine("cuDeviceGetAttribute(") + entry.what + ")").str()))
      return err;
  return info;
}

llvm::Expected<CUmodule> CudaDriver::loadModule(llvm::StringRef image, llvm::StringRef what,
                                                std::string *infoLog) const {
  // PTX must end with a NUL; a cubin does not mind an extra byte.
  std::string terminated = image.str();
  char info[8192] = {};
  char error[8192] = {};
  CUjit_option options[] = {CU_JIT_INFO_LOG_BUFFER, CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES,
                            CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES};
  void *values[] = {info, reinterpret_cast<void *>(uintptr_t(sizeof(info) - 1)), error,
                    reinterpret_cast<void *>(uintptr_t(sizeof(error) - 1))};
  CUmodule module = nullptr;
  CUresult result = moduleLoadDataEx(&module, terminated.c_str(), std::size(options), options, values);
  if (infoLog)
    *infoLog = info;
  if (result != CUDA_SUCCESS) {
    std::string message = "cuModuleLoadDataEx(" + what.str() + "): " + describe(result);
    if (error[0])
      message += "\n" + llvm::StringRef(error).rtrim().str();
    return makeError(message);
  }
  return module;
}

} // namespace llamac::runtime::cuda
