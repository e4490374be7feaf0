//===- tests/cuda/CudaDriverTest.cpp - The driver wrapper's error paths ---===//
//
// Runs everywhere: without a GPU, CudaDriver::load() must return a clear
// error and never crash; with one, it must find a device.
//
//===----------------------------------------------------------------------===//

#include "runtime/cuda/CudaDriver.h"

#include <gtest/gtest.h>

#include <cstdlib>

namespace llamac::runtime::cuda {
namespace {

TEST(CudaDriver, LoadSucceedsOrSaysWhy) {
  auto driver = CudaDriver::load();
  if (driver) {
    auto count = driver->deviceCount();
    ASSERT_TRUE(bool(count)) << llvm::toString(count.takeError());
    EXPECT_GT(*count, 0);
    EXPECT_GE(driver->version(), 12000);
    auto info = driver->deviceInfo(0);
    ASSERT_TRUE(bool(info)) << llvm::toString(info.takeError());
    EXPECT_FALSE(info->name.empty());
    EXPECT_GE(info->computeMajor, 7);
    std::cout << "device 0: " << info->name << ", " << info->smArch() << ", driver CUDA "
              << driver->version() << "\n";
    return;
  }
  std::string message = llvm::toString(driver.takeError());
  std::cout << "no CUDA here: " << message << "\n";
  // Either no driver library at all, or a driver that found no usable device.
  bool noLibrary = message.find("libcuda.so.1 not found: no NVIDIA driver on this machine") == 0;
  bool initFailed = message.find("cuInit failed: CUDA_ERROR_") == 0;
  bool tooOld = message.find("llamac needs CUDA 12.0 or newer") != std::string::npos;
  EXPECT_TRUE(noLibrary || initFailed || tooOld) << message;

  // The outcome is cached: a second call gives the same answer.
  auto again = CudaDriver::load();
  ASSERT_FALSE(bool(again));
  EXPECT_EQ(llvm::toString(again.takeError()), message);
}

TEST(CudaDriver, MissingLibrary) {
  auto driver = CudaDriver::open("libllamac-no-such-driver.so.1");
  ASSERT_FALSE(bool(driver));
  std::string message = llvm::toString(driver.takeError());
  EXPECT_EQ(message.find("libllamac-no-such-driver.so.1 not found: no NVIDIA driver on this machine"), 0u)
      << message;
}

TEST(CudaDriver, LibraryThatIsNotADriver) {
  // libz is a dependency of every llamac binary (through LLVM), so it is there.
  auto driver = CudaDriver::open("libz.so.1");
  ASSERT_FALSE(bool(driver));
  EXPECT_EQ(llvm::toString(driver.takeError()),
            "libz.so.1: has no cuDriverGetVersion, so it is not a CUDA driver library");
}

/// Opens the fake driver (FakeCudaDriver.cpp) in one of its failure modes.
std::string openFake(const char *mode) {
  if (mode)
    setenv("LLAMAC_FAKE_CUDA", mode, 1);
  else
    unsetenv("LLAMAC_FAKE_CUDA");
  auto driver = CudaDriver::open(LLAMAC_FAKE_CUDA_DRIVER);
  unsetenv("LLAMAC_FAKE_CUDA");
  if (driver)
    return "opened";
  return llvm::toString(driver.takeError());
}

TEST(CudaDriver, NoDevice) {
  EXPECT_EQ(openFake(nullptr), "cuInit failed: CUDA_ERROR_NO_DEVICE (no CUDA-capable device is detected)");
}

TEST(CudaDriver, DriverTooOld) {
  EXPECT_EQ(openFake("old"), std::string(LLAMAC_FAKE_CUDA_DRIVER) +
                                 ": the NVIDIA driver supports CUDA 11.8, llamac needs CUDA 12.0 or newer "
                                 "(update the driver)");
}

TEST(CudaDriver, MissingEntryPoint) {
  EXPECT_EQ(openFake("missing"), std::string(LLAMAC_FAKE_CUDA_DRIVER) +
                                     " (CUDA 12.8): cuLaunchKernelEx not found (ABI of CUDA 11.6)");
}

TEST(CudaDriver, CheckFormatsTheError) {
  auto driver = CudaDriver::load();
  if (!driver) {
    llvm::consumeError(driver.takeError());
    GTEST_SKIP() << "needs the driver for error names";
  }
  EXPECT_FALSE(bool(driver->check(CUDA_SUCCESS, "cuInit")));
  llvm::Error err = driver->check(CUDA_ERROR_ILLEGAL_ADDRESS, "cuLaunchKernel(k12_matmul_add)");
  EXPECT_EQ(llvm::toString(std::move(err)),
            "cuLaunchKernel(k12_matmul_add): CUDA_ERROR_ILLEGAL_ADDRESS (an illegal memory access was "
            "encountered)");
}

} // namespace
} // namespace llamac::runtime::cuda
