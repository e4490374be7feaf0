#include "runtime/cuda/CudaEngine.h"

#include "runtime/cuda/CudaDriver.h"

namespace llamac::runtime::cuda {

llvm::Expected<std::unique_ptr<Engine>> createCudaEngine(const LoadedPlan &plan, const PlanProgram &program,
                                                         llvm::raw_ostream *log) {
  auto driver = CudaDriver::load();
  if (!driver) return driver.takeError();
  if (plan.plan.kernels().empty())
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "the plan holds no CUDA kernels (this llamac does not generate them yet)");
  return llvm::createStringError(llvm::inconvertibleErrorCode(), "the CUDA engine is not implemented yet");
}

} // namespace llamac::runtime::cuda
