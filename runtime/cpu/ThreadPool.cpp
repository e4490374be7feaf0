#include "runtime/cpu/ThreadPool.h"

#include <algorithm>

namespace llamac::runtime {

ThreadPool::ThreadPool(unsigned threads) {
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  for (unsigned i = 1; i < threads; ++i) workers_.emplace_back([this, i] { workerLoop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  start_.notify_all();
  for (std::thread &t : workers_) t.join();
}

void ThreadPool::parallelFor(size_t n, llvm::function_ref<void(size_t, size_t)> body, size_t minChunk) {
  size_t chunks = std::min<size_t>(size(), std::max<size_t>(1, n / std::max<size_t>(1, minChunk)));
  if (chunks <= 1) {
    if (n > 0) body(0, n);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    body_ = body;
    n_ = n;
    activeChunks_ = chunks;
    pending_ = chunks - 1;
    ++generation_;
  }
  start_.notify_all();
  body(0, n / chunks);
  std::unique_lock<std::mutex> lock(mutex_);
  done_.wait(lock, [&] { return pending_ == 0; });
}

void ThreadPool::workerLoop(unsigned index) {
  uint64_t seen = 0;
  for (;;) {
    size_t begin, end;
    llvm::function_ref<void(size_t, size_t)> body;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      start_.wait(lock, [&] { return stopping_ || generation_ != seen; });
      if (stopping_) return;
      seen = generation_;
      if (index >= activeChunks_) continue;
      begin = n_ * index / activeChunks_;
      end = n_ * (index + 1) / activeChunks_;
      body = body_;
    }
    body(begin, end);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (--pending_ == 0) done_.notify_one();
    }
  }
}

} // namespace llamac::runtime
