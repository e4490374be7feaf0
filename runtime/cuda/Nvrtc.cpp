//===- runtime/cuda/Nvrtc.cpp - CUDA C++ to cubin or PTX, opened at run time ===//

#include "runtime/cuda/Nvrtc.h"

#include "llvm/ADT/ScopeExit.h"
#include "llvm/Support/FormatVariadic.h"

#include <dlfcn.h>

#include <mutex>

namespace llamac::runtime::cuda {

namespace {

/// Newest first: an older NVRTC cannot target the newest GPUs.
constexpr const char *kLibraryNames[] = {
    "libnvrtc.so.13",
    "libnvrtc.so.12",
    "libnvrtc.so",
    "/usr/local/cuda/lib64/libnvrtc.so.13",
    "/usr/local/cuda/lib64/libnvrtc.so.12",
    "/usr/local/cuda/lib64/libnvrtc.so",
};

llvm::Error makeError(const llvm::Twine &message) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), message);
}

} // namespace

llvm::Expected<const Nvrtc &> Nvrtc::load() {
  static std::once_flag once;
  static const Nvrtc *nvrtc = nullptr; // never destroyed, on purpose
  static std::string failure;
  std::call_once(once, [] {
    void *handle = nullptr;
    const char *found = nullptr;
    for (const char *name : kLibraryNames) {
      handle = dlopen(name, RTLD_NOW | RTLD_LOCAL);
      if (handle) {
        found = name;
        break;
      }
    }
    if (!handle) {
      failure = "libnvrtc not found (tried";
      for (const char *name : kLibraryNames)
        failure += std::string(" ") + name;
      failure += "): install the CUDA toolkit's NVRTC to compile kernels";
      return;
    }
    std::unique_ptr<Nvrtc> loaded(new Nvrtc());
    loaded->library = found;
    std::string missing;
    auto resolve = [&](const char *symbol, auto &slot) {
      slot = reinterpret_cast<std::remove_reference_t<decltype(slot)>>(dlsym(handle, symbol));
      if (!slot)
        missing += missing.empty() ? symbol : std::string(", ") + symbol;
    };
    resolve("nvrtcGetErrorString", loaded->getErrorString);
    resolve("nvrtcVersion", loaded->getVersion);
    resolve("nvrtcGetNumSupportedArchs", loaded->getNumSupportedArchs);
    resolve("nvrtcGetSupportedArchs", loaded->getSupportedArchs);
    resolve("nvrtcCreateProgram", loaded->createProgram);
    resolve("nvrtcDestroyProgram", loaded->destroyProgram);
    resolve("nvrtcCompileProgram", loaded->compileProgram);
    resolve("nvrtcGetProgramLogSize", loaded->getProgramLogSize);
    resolve("nvrtcGetProgramLog", loaded->getProgramLog);
    resolve("nvrtcGetPTXSize", loaded->getPTXSize);
    resolve("nvrtcGetPTX", loaded->getPTX);
    resolve("nvrtcGetCUBINSize", loaded->getCUBINSize);
    resolve("nvrtcGetCUBIN", loaded->getCUBIN);
    if (!missing.empty()) {
      failure = std::string(found) + ": not a usable NVRTC, it lacks " + missing;
      dlclose(handle);
      return;
    }
    nvrtc = loaded.release();
  });
  if (!nvrtc)
    return makeError(failure);
  return *nvrtc;
}

NvrtcVersion Nvrtc::version() const {
  NvrtcVersion v;
  getVersion(&v.major, &v.minor);
  return v;
}

std::vector<int> Nvrtc::supportedArchs() const {
  int count = 0;
  if (getNumSupportedArchs(&count) != NVRTC_SUCCESS || count <= 0)
    return {};
  std::vector<int> archs(count);
  if (getSupportedArchs(archs.data()) != NVRTC_SUCCESS)
    return {};
  return archs;
}

llvm::Expected<CompiledKernel> Nvrtc::compile(
    llvm::StringRef source, llvm::StringRef name, llvm::StringRef arch,
    llvm::ArrayRef<std::string> extraOptions,
    llvm::ArrayRef<std::pair<std::string, std::string>> headers) const {
  CompiledKernel result;
  result.arch = arch.str();
  if (arch.startswith("compute_"))
    result.isPtx = true;
  else if (!arch.startswith("sm_"))
    return makeError(name + ": architecture must look like sm_90 (cubin) or compute_90 (PTX), got '" +
                     arch + "'");

  auto fail = [&](nvrtcResult status, llvm::StringRef what) {
    return makeError(name + ": " + what + " failed: " + getErrorString(status));
  };

  std::string sourceText = source.str();
  std::string programName = name.str();
  std::vector<const char *> headerTexts, headerNames;
  for (const auto &[includeName, text] : headers) {
    headerNames.push_back(includeName.c_str());
    headerTexts.push_back(text.c_str());
  }
  nvrtcProgram program = nullptr;
  if (nvrtcResult status = createProgram(&program, sourceText.c_str(), programName.c_str(),
                                         int(headers.size()), headerTexts.data(), headerNames.data());
      status != NVRTC_SUCCESS)
    return fail(status, "nvrtcCreateProgram");
  auto destroy = llvm::make_scope_exit([&] { destroyProgram(&program); });

  std::string archOption = "--gpu-architecture=" + arch.str();
  std::vector<const char *> options = {"-std=c++17", archOption.c_str(), "-default-device"};
  for (const std::string &option : extraOptions)
    options.push_back(option.c_str());
  nvrtcResult compiled = compileProgram(program, int(options.size()), options.data());

  size_t logSize = 0;
  if (nvrtcResult status = getProgramLogSize(program, &logSize); status != NVRTC_SUCCESS)
    return fail(status, "nvrtcGetProgramLogSize");
  std::string log(logSize, '\0');
  if (logSize > 0)
    if (nvrtcResult status = getProgramLog(program, log.data()); status != NVRTC_SUCCESS)
      return fail(status, "nvrtcGetProgramLog");
  result.log = llvm::StringRef(log.c_str()).rtrim().str();

  if (compiled != NVRTC_SUCCESS)
    return makeError(name + ": NVRTC compilation for " + arch + " failed: " +
                     getErrorString(compiled) + "\n" + result.log);

  size_t imageSize = 0;
  if (result.isPtx) {
    if (nvrtcResult status = getPTXSize(program, &imageSize); status != NVRTC_SUCCESS)
      return fail(status, "nvrtcGetPTXSize");
    result.image.resize(imageSize);
    if (nvrtcResult status = getPTX(program, result.image.data()); status != NVRTC_SUCCESS)
      return fail(status, "nvrtcGetPTX");
    // The PTX size counts the terminating NUL; the text does not need it.
    while (!result.image.empty() && result.image.back() == '\0')
      result.image.pop_back();
  } else {
    if (nvrtcResult status = getCUBINSize(program, &imageSize); status != NVRTC_SUCCESS)
      return fail(status, "nvrtcGetCUBINSize");
    result.image.resize(imageSize);
    if (nvrtcResult status = getCUBIN(program, result.image.data()); status != NVRTC_SUCCESS)
      return fail(status, "nvrtcGetCUBIN");
  }
  return result;
}

llvm::Expected<CompiledKernel> compileCuda(
    llvm::StringRef source, llvm::StringRef name, llvm::StringRef arch,
    llvm::ArrayRef<std::string> extraOptions,
    llvm::ArrayRef<std::pair<std::string, std::string>> headers) {
  auto nvrtc = Nvrtc::load();
  if (!nvrtc)
    return nvrtc.takeError();
  return nvrtc->compile(source, name, arch, extraOptions, headers);
}

llvm::Expected<NvrtcVersion> nvrtcVersion() {
  auto nvrtc = Nvrtc::load();
  if (!nvrtc)
    return nvrtc.takeError();
  return nvrtc->version();
}

} // namespace llamac::runtime::cuda
