//===- runtime/cpu/ThreadPool.h - A fork-join pool for the CPU executor ---===//
#pragma once

#include "llvm/ADT/STLFunctionalExtras.h"

#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace llamac::runtime {

/// Persistent worker threads that split a range statically. parallelFor
/// blocks until every chunk is done and allocates nothing, so the decode loop
/// can call it for every op.
class ThreadPool {
public:
  /// `threads` counts the calling thread; 0 means the machine's core count.
  explicit ThreadPool(unsigned threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool &) = delete;
  ThreadPool &operator=(const ThreadPool &) = delete;

  unsigned size() const { return workers_.size() + 1; }

  /// Calls body(begin, end) over disjoint chunks covering [0, n). Ranges
  /// shorter than `minChunk` per thread use fewer threads.
  void parallelFor(size_t n, llvm::function_ref<void(size_t, size_t)> body, size_t minChunk = 1);

private:
  void workerLoop(unsigned index);

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable start_;
  std::condition_variable done_;
  uint64_t generation_ = 0;
  unsigned pending_ = 0;
  unsigned activeChunks_ = 0;
  bool stopping_ = false;
  size_t n_ = 0;
  llvm::function_ref<void(size_t, size_t)> body_;
};

} // namespace llamac::runtime
