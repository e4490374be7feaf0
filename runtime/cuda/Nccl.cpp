//===- runtime/cuda/Nccl.cpp - NCCL, opened at run time -------------------===//

#include "runtime/cuda/Nccl.h"

#include "llvm/ADT/SmallString.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/Path.h"

#include <dlfcn.h>
#include <unistd.h>

#include <mutex>
#include <vector>

namespace llamac::runtime::cuda {

namespace {

/// NCCL captures its collectives into CUDA graphs from 2.9 on.
constexpr int kMinimumVersion = 20900;

llvm::Error makeError(const llvm::Twine &message) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), message);
}

/// Where to look for the library, in order (see Nccl.h).
std::vector<std::string> candidates() {
  std::vector<std::string> names;
  if (const char *path = std::getenv("LLAMAC_NCCL"); path && *path) names.push_back(path);
  char exe[4096];
  ssize_t n = ::readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n > 0) {
    llvm::SmallString<256> bundled(llvm::sys::path::parent_path(llvm::StringRef(exe, size_t(n))));
    llvm::sys::path::append(bundled, "..", "lib", "libnccl.so.2");
    names.push_back(std::string(bundled));
  }
  names.push_back("libnccl.so.2");
  names.push_back("/usr/local/cuda/lib64/libnccl.so.2");
  return names;
}

} // namespace

std::string Nccl::versionText() const {
  // NCCL_VERSION(X, Y, Z) is X * 10000 + Y * 100 + Z from 2.9 on.
  return llvm::formatv("{0}.{1}.{2}", version / 10000, (version % 10000) / 100, version % 100).str();
}

llvm::Expected<const Nccl &> Nccl::load() {
  static std::once_flag once;
  static const Nccl *nccl = nullptr; // never destroyed, on purpose
  static std::string failure;
  std::call_once(once, [] {
    void *handle = nullptr;
    std::string tried;
    std::unique_ptr<Nccl> loaded(new Nccl());
    for (const std::string &name : candidates()) {
      handle = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (handle) {
        loaded->path = name;
        break;
      }
      tried += (tried.empty() ? "" : ", ") + name;
    }
    if (!handle) {
      failure = "libnccl.so.2 not found (tried " + tried +
                "): tensor parallel plans need NCCL (set LLAMAC_NCCL to its path)";
      return;
    }
    std::string missing;
    auto resolve = [&](const char *symbol, auto &slot) {
      slot = reinterpret_cast<std::remove_reference_t<decltype(slot)>>(dlsym(handle, symbol));
      if (!slot) missing += missing.empty() ? symbol : std::string(", ") + symbol;
    };
    resolve("ncclGetVersion", loaded->getVersion);
    resolve("ncclGetErrorString", loaded->getErrorString);
    resolve("ncclCommInitAll", loaded->commInitAll);
    resolve("ncclCommDestroy", loaded->commDestroy);
    resolve("ncclAllReduce", loaded->allReduce);
    resolve("ncclAllGather", loaded->allGather);
    // Optional: only NCCL 2.13 and newer explain their errors.
    loaded->getLastError = reinterpret_cast<decltype(loaded->getLastError)>(dlsym(handle, "ncclGetLastError"));
    if (!missing.empty()) {
      failure = loaded->path + ": not an NCCL library (no " + missing + ")";
      return;
    }
    if (loaded->getVersion(&loaded->version) != ncclSuccess || loaded->version < kMinimumVersion) {
      failure = loaded->path + ": NCCL " + loaded->versionText() + " is too old, llamac needs 2.9 or newer " +
                "(CUDA graph capture of collectives)";
      return;
    }
    nccl = loaded.release();
  });
  if (!nccl) return makeError(failure);
  return *nccl;
}

llvm::Error Nccl::check(ncclResult_t result, llvm::StringRef what) const {
  if (result == ncclSuccess) return llvm::Error::success();
  std::string message = (what + ": " + getErrorString(result)).str();
  if (const char *last = getLastError ? getLastError(nullptr) : nullptr; last && *last) message += std::string(" (") + last + ")";
  return makeError(message);
}

} // namespace llamac::runtime::cuda
