//===- runtime/cuda/TensorParallelEngine.cpp - One plan on N GPUs ---------===//

#include "runtime/cuda/TensorParallelEngine.h"

#include "runtime/cuda/CudaDriver.h"
#include "runtime/cuda/CudaEngine.h"
#include "runtime/cuda/Nccl.h"

#include "llvm/ADT/STLFunctionalExtras.h"
#include "llvm/Support/FormatVariadic.h"

#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <thread>

namespace llamac::runtime::cuda {

namespace {

llvm::Error error(const llvm::Twine &msg) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), msg);
}

/// One thread per rank; run() hands every thread the same task at once and
/// waits for all of them, as a collective needs.
class RankThreads {
public:
  explicit RankThreads(unsigned ranks) : failures_(ranks) {
    for (unsigned r = 0; r < ranks; ++r) threads_.emplace_back([this, r] { loop(r); });
  }
  ~RankThreads() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      quit_ = true;
    }
    wake_.notify_all();
    for (std::thread &t : threads_) t.join();
  }

  /// Runs task(r) on thread r for every rank; the error of the lowest failing
  /// rank, naming it. `task` is only referred to until run returns (a step
  /// allocates nothing here).
  llvm::Error run(llvm::function_ref<llvm::Error(unsigned)> task) {
    std::unique_lock<std::mutex> lock(mutex_);
    task_ = task;
    pending_ = threads_.size();
    ++generation_;
    wake_.notify_all();
    done_.wait(lock, [&] { return pending_ == 0; });
    task_ = nullptr;
    for (size_t r = 0; r < failures_.size(); ++r)
      if (failures_[r]) {
        std::string message = llvm::formatv("rank {0}: {1}", r, *failures_[r]).str();
        for (auto &f : failures_) f.reset();
        return error(message);
      }
    return llvm::Error::success();
  }

private:
  void loop(unsigned rank) {
    uint64_t seen = 0;
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      wake_.wait(lock, [&] { return quit_ || generation_ != seen; });
      if (quit_) return;
      seen = generation_;
      llvm::function_ref<llvm::Error(unsigned)> task = task_;
      lock.unlock();
      llvm::Error e = task(rank);
      std::optional<std::string> failure;
      if (e) failure = llvm::toString(std::move(e));
      lock.lock();
      failures_[rank] = std::move(failure);
      if (--pending_ == 0) done_.notify_all();
    }
  }

  std::vector<std::thread> threads_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  llvm::function_ref<llvm::Error(unsigned)> task_;
  uint64_t generation_ = 0;
  size_t pending_ = 0;
  bool quit_ = false;
  std::vector<std::optional<std::string>> failures_;
};

/// The ranks' set-up meets here before its first collective: if one rank
/// failed before (no GPU memory, no kernel image), the others must not wait
/// for it inside NCCL forever.
class SetupBarrier {
public:
  explicit SetupBarrier(unsigned ranks) : arrived_(ranks, false) {}

  /// Rank `rank` got this far (ok) or gave up (not ok, and returns at once);
  /// an ok rank waits for every rank and learns whether all are ok.
  llvm::Error arrive(unsigned rank, bool ok) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (!arrived_[rank]) {
      arrived_[rank] = true;
      ++count_;
      failed_ |= !ok;
      changed_.notify_all();
    }
    if (!ok) return llvm::Error::success();
    changed_.wait(lock, [&] { return count_ == arrived_.size() || failed_; });
    if (failed_) return error("another rank failed to set up");
    return llvm::Error::success();
  }

private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<bool> arrived_;
  size_t count_ = 0;
  bool failed_ = false;
};

class TensorParallelEngine : public Engine {
public:
  TensorParallelEngine(const Nccl &nccl, unsigned ranks) : nccl_(nccl), ranks_(ranks), tokens_(ranks, -1) {}
  ~TensorParallelEngine() override;

  llvm::Error init(const LoadedPlan &plan, const PlanProgram &program, llvm::raw_ostream *log);

  std::string deviceName() const override {
    llvm::StringRef rank0 = name0_;
    rank0.consume_front("cuda: ");
    return llvm::formatv("cuda: {0} x {1}, tensor parallel over NCCL {2}", ranks_, rank0, nccl_.versionText()).str();
  }

  llvm::Expected<int> stepGreedy(int token, int pos) override {
    std::vector<int> &next = tokens_; // one per rank, allocated once
    if (auto e = threads_->run([&](unsigned r) -> llvm::Error {
          auto t = engines_[r]->stepGreedy(token, pos);
          if (!t) return t.takeError();
          next[r] = *t;
          return llvm::Error::success();
        }))
      return e;
    for (unsigned r = 1; r < ranks_; ++r)
      if (next[r] != next[0])
        return error(llvm::formatv("the ranks disagree on the token after position {0}: rank 0 says {1}, rank {2} {3}",
                                   pos, next[0], r, next[r]));
    return next[0];
  }

  llvm::Expected<llvm::MutableArrayRef<float>> stepLogits(int token, int pos) override {
    llvm::MutableArrayRef<float> logits;
    if (auto e = threads_->run([&](unsigned r) -> llvm::Error {
          auto out = engines_[r]->stepLogits(token, pos);
          if (!out) return out.takeError();
          if (r == 0) logits = *out;
          return llvm::Error::success();
        }))
      return e;
    return logits;
  }

  // timeGreedySteps: the default, host time (a step is N graphs on N
  // streams, which no one stream's events bracket).

  /// One GPU's: the ranks read their shards in parallel, each from its own memory.
  llvm::Expected<double> copyBandwidth() override {
    double bandwidth = 0;
    if (auto e = threads_->run([&](unsigned r) -> llvm::Error {
          if (r != 0) return llvm::Error::success();
          auto b = engines_[0]->copyBandwidth();
          if (!b) return b.takeError();
          bandwidth = *b;
          return llvm::Error::success();
        }))
      return e;
    return bandwidth;
  }

  /// Over all ranks.
  uint64_t arenaBytes() const override {
    uint64_t bytes = 0;
    for (const auto &e : engines_) bytes += e ? e->arenaBytes() : 0;
    return bytes;
  }
  uint64_t kvCacheBytes() const override {
    uint64_t bytes = 0;
    for (const auto &e : engines_) bytes += e ? e->kvCacheBytes() : 0;
    return bytes;
  }

private:
  const Nccl &nccl_;
  unsigned ranks_;
  std::vector<ncclComm_t> comms_;
  std::unique_ptr<RankThreads> threads_;
  std::unique_ptr<SetupBarrier> barrier_; // each rank's first collective waits here
  std::vector<std::unique_ptr<Engine>> engines_;
  std::string name0_;
  std::vector<int> tokens_; // stepGreedy's output of each rank
};

TensorParallelEngine::~TensorParallelEngine() {
  // Each rank's engine is destroyed on its own thread (where its context is
  // current), and before the communicators its graphs use.
  if (threads_)
    llvm::consumeError(threads_->run([&](unsigned r) {
      if (r < engines_.size()) engines_[r].reset();
      return llvm::Error::success();
    }));
  threads_.reset();
  for (ncclComm_t comm : comms_)
    if (comm) nccl_.commDestroy(comm);
}

llvm::Error TensorParallelEngine::init(const LoadedPlan &plan, const PlanProgram &program, llvm::raw_ostream *log) {
  auto driver = CudaDriver::load();
  if (!driver) return driver.takeError();
  auto count = driver->deviceCount();
  if (!count) return count.takeError();
  if (unsigned(*count) < ranks_)
    return error(llvm::formatv("the plan is partitioned for {0} GPUs (tensor parallel), this machine has {1}", ranks_,
                               *count));

  // NVLink SHARP multicast stays off: its buffers are a resource other jobs
  // on the host may need, and the all-reduces here are small.
  setenv("NCCL_NVLS_ENABLE", "0", /*overwrite=*/0);
  std::vector<int> devices(ranks_);
  for (unsigned r = 0; r < ranks_; ++r) devices[r] = int(r);
  comms_.assign(ranks_, nullptr);
  if (auto e = nccl_.check(nccl_.commInitAll(comms_.data(), int(ranks_), devices.data()), "ncclCommInitAll")) {
    comms_.clear();
    return e;
  }

  threads_ = std::make_unique<RankThreads>(ranks_);
  engines_.resize(ranks_);
  barrier_ = std::make_unique<SetupBarrier>(ranks_);
  auto setUp = [&](unsigned r) -> llvm::Error {
    CudaRank rank;
    rank.device = devices[r];
    rank.rank = r;
    bool first = true;
    rank.collective = [this, r, first](const plan::Function::Launch::Collective &c, CUdeviceptr arena,
                                       CUstream stream) mutable -> llvm::Error {
      if (first) {
        first = false;
        if (auto e = barrier_->arrive(r, true)) return e;
      }
      void *send = reinterpret_cast<void *>(arena + c.send_offset());
      void *recv = reinterpret_cast<void *>(arena + c.recv_offset());
      auto *s = reinterpret_cast<cudaStream_t>(stream);
      switch (c.kind()) {
      case plan::Function::Launch::Collective::ALL_REDUCE_SUM:
        return nccl_.check(nccl_.allReduce(send, recv, c.bytes() / 4, ncclFloat32, ncclSum, comms_[r], s),
                           "ncclAllReduce");
      case plan::Function::Launch::Collective::ALL_GATHER:
        return nccl_.check(nccl_.allGather(send, recv, c.bytes(), ncclUint8, comms_[r], s), "ncclAllGather");
      default: return error(llvm::formatv("unknown collective kind {0}", int(c.kind())));
      }
    };
    auto engine = createCudaRankEngine(plan, program, std::move(rank), r == 0 ? log : nullptr);
    if (!engine) {
      llvm::consumeError(barrier_->arrive(r, false));
      return engine.takeError();
    }
    engines_[r] = std::move(*engine);
    return llvm::Error::success();
  };
  if (auto e = threads_->run(setUp)) return e;
  name0_ = engines_[0]->deviceName();
  return llvm::Error::success();
}

} // namespace

llvm::Expected<std::unique_ptr<Engine>> createTensorParallelEngine(const LoadedPlan &plan,
                                                                   const PlanProgram &program,
                                                                   llvm::raw_ostream *log) {
  auto nccl = Nccl::load();
  if (!nccl) return nccl.takeError();
  auto engine = std::make_unique<TensorParallelEngine>(*nccl, plan.ranks());
  if (auto e = engine->init(plan, program, log)) return e;
  return std::unique_ptr<Engine>(std::move(engine));
}

} // namespace llamac::runtime::cuda
