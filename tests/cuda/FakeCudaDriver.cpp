//===- tests/cuda/FakeCudaDriver.cpp - A libcuda stand-in for error paths -===//
//
// Just enough of the driver's exports for CudaDriver::open() to get past
// dlopen, so the tests can reach each later failure on a machine without a
// GPU. The environment variable LLAMAC_FAKE_CUDA picks the failure:
//   "old"     - the driver reports CUDA 11.8
//   "missing" - cuGetProcAddress does not know cuLaunchKernelEx
//   unset     - every entry point resolves, and cuInit says there is no device
//
//===----------------------------------------------------------------------===//

#include <cuda.h>

#include <cstdlib>
#include <cstring>

namespace {

const char *mode() {
  const char *value = std::getenv("LLAMAC_FAKE_CUDA");
  return value ? value : "";
}

CUresult CUDAAPI fakeInit(unsigned int) { return CUDA_ERROR_NO_DEVICE; }

/// What every other entry point resolves to; the tests never call them.
CUresult CUDAAPI notImplemented() { return CUDA_ERROR_NOT_SUPPORTED; }

} // namespace

extern "C" {

__attribute__((visibility("default"))) CUresult CUDAAPI cuDriverGetVersion(int *version) {
  *version = std::strcmp(mode(), "old") == 0 ? 11080 : 12080;
  return CUDA_SUCCESS;
}

__attribute__((visibility("default"))) CUresult CUDAAPI cuGetErrorName(CUresult error, const char **text) {
  switch (error) {
  case CUDA_ERROR_NO_DEVICE:
    *text = "CUDA_ERROR_NO_DEVICE";
    return CUDA_SUCCESS;
  default:
    return CUDA_ERROR_INVALID_VALUE;
  }
}

__attribute__((visibility("default"))) CUresult CUDAAPI cuGetErrorString(CUresult error, const char **text) {
  switch (error) {
  case CUDA_ERROR_NO_DEVICE:
    *text = "no CUDA-capable device is detected";
    return CUDA_SUCCESS;
  default:
    return CUDA_ERROR_INVALID_VALUE;
  }
}

__attribute__((visibility("default"))) CUresult CUDAAPI cuGetProcAddress_v2(const char *symbol, void **pfn, int,
                                                                             cuuint64_t,
                                                                             CUdriverProcAddressQueryResult *status) {
  *pfn = nullptr;
  if (std::strcmp(mode(), "missing") == 0 && std::strcmp(symbol, "cuLaunchKernelEx") == 0) {
    *status = CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
    return CUDA_SUCCESS;
  }
  if (std::strcmp(symbol, "cuInit") == 0)
    *pfn = reinterpret_cast<void *>(&fakeInit);
  else if (std::strcmp(symbol, "cuGetErrorName") == 0)
    *pfn = reinterpret_cast<void *>(&cuGetErrorName);
  else if (std::strcmp(symbol, "cuGetErrorString") == 0)
    *pfn = reinterpret_cast<void *>(&cuGetErrorString);
  else if (std::strcmp(symbol, "cuDriverGetVersion") == 0)
    *pfn = reinterpret_cast<void *>(&cuDriverGetVersion);
  else
    *pfn = reinterpret_cast<void *>(&notImplemented);
  *status = CU_GET_PROC_ADDRESS_SUCCESS;
  return CUDA_SUCCESS;
}

} // extern "C"
