//===- runtime/cuda/CudaEngine.cpp - Running a plan on the GPU -------------===//
//
// Set-up, once: load each kernel from the cubin for this GPU (or recompile
// its source with NVRTC when the plan has none, and say so), upload the
// weights through pinned staging buffers, allocate the arena, the KV cache
// and two step scalars (token, position), then capture each function's launch
// list as a CUDA graph.
//
// A step: copy (token, pos) into device memory, replay the graph, copy the
// output back, all on one stream with one synchronization.
//
// Greedy decoding chains steps on the device: a third graph runs
// kChainDefault steps, and the host reads the tokens once per chain. The
// chain the caller announces next (stepsGreedy's `then`) is launched before
// the host waits for this one: it continues from the token and position the
// device holds, so the GPU goes from chain to chain without waiting for the
// host; a second stream copies each chain's tokens out, so the next chain
// does not wait for the copy either. LLAMAC_CHAIN=n sets the length (1: no
// chaining). The graph is
// greedy_chain_start (the embedding) and then greedy_chain_step n times,
// whose classifier advances pos and whose last kernel feeds the token back
// and writes the next step's embedding (codegen/kernels/advance.cuh); plans
// without those functions (persistent ones; tensor parallel ranks step one
// by one) replay @decode_greedy and the advance_greedy kernel n times
// instead.
//
// On sm_90 and later the launches are programmatic dependent launches: each
// kernel starts while the one before it finishes, loads its weights into
// registers and waits (griddepcontrol) before reading what that kernel wrote.
// LLAMAC_NO_PDL=1 turns that off, for comparison.
//
// LLAMAC_CUDA_SYNC=1 launches kernels one by one with a synchronization after
// each instead of replaying the graph, so a failing kernel is named.
//
// As one rank of a tensor parallel plan (createCudaRankEngine), the engine
// uploads its rank's weights, passes its rank to RANK arguments and runs the
// plan's collectives through CudaRank::collective; they are captured into the
// graph with the kernels. The kernel after a collective is launched without
// the programmatic dependency: it waits for the collective to finish.
//
//===----------------------------------------------------------------------===//

#include "runtime/cuda/CudaEngine.h"

#include "runtime/cuda/CudaDriver.h"
#include "runtime/cuda/Nvrtc.h"
#include "runtime/cuda/TensorParallelEngine.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/Support/FormatVariadic.h"

#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <optional>

namespace llamac::runtime::cuda {

namespace {

llvm::Error error(const llvm::Twine &msg) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), msg);
}

/// One kernel launch, resolved to device pointers and parameter storage.
struct Launch {
  CUfunction function = nullptr;
  std::string name;
  unsigned grid[3], block[3], sharedBytes;
  /// A persistent kernel: launched cooperatively, every block resident.
  bool persistent = false;
  std::vector<uint64_t> storage; // one 8-byte slot per parameter
  std::vector<void *> params;
  /// Tensor parallel plans: a collective instead of a kernel.
  std::optional<plan::Function::Launch::Collective> collective;
};

/// Settings for timing experiments, read once from the environment
/// (README.md, bench/variants.sh).
struct Tuning {
  /// LLAMAC_SKIP_KERNELS=a,b: the launches of kernels whose names contain a
  /// or b are left out of the graphs (the tokens are wrong).
  std::vector<std::string> skipKernels;
  /// LLAMAC_NVRTC_OPTIONS: every kernel is recompiled with these options
  /// (common.cuh's experiment switches), separated by spaces.
  std::vector<std::string> nvrtcOptions;
  /// LLAMAC_NVRTC_KERNELS=a,b: only kernels whose names contain a or b are
  /// recompiled with those options (default: every kernel).
  std::vector<std::string> nvrtcKernels;
  /// LLAMAC_GRID_STRIDE_BLOCKS_PER_SM: blocks per SM of the grid-stride
  /// (matmul) kernels: 0 their whole grid (the default), -1 as many as fit.
  int gridStrideBlocksPerSm = 0;
  /// LLAMAC_PERSISTENT_BLOCKS_PER_SM: at most this many blocks per SM of a
  /// persistent kernel (0: as many as fit, the default).
  int persistentBlocksPerSm = 0;
  /// LLAMAC_TIMELINE=file: every kernel is recompiled to stamp its blocks'
  /// wait, release and end (common.cuh's KernelTimeline); the first
  /// kTimelineCapacity records are written to `file` when the engine is
  /// destroyed, the kernel names to `file`.names (bench/timeline.py).
  std::string timeline;

  static Tuning fromEnvironment() {
    Tuning t;
    auto list = [](const char *name, char separator, std::vector<std::string> &out) {
      llvm::SmallVector<llvm::StringRef> parts;
      if (const char *value = std::getenv(name)) llvm::StringRef(value).split(parts, separator, -1, false);
      for (llvm::StringRef part : parts) out.push_back(part.str());
    };
    list("LLAMAC_SKIP_KERNELS", ',', t.skipKernels);
    list("LLAMAC_NVRTC_OPTIONS", ' ', t.nvrtcOptions);
    list("LLAMAC_NVRTC_KERNELS", ',', t.nvrtcKernels);
    if (const char *value = std::getenv("LLAMAC_GRID_STRIDE_BLOCKS_PER_SM")) t.gridStrideBlocksPerSm = std::atoi(value);
    if (const char *value = std::getenv("LLAMAC_PERSISTENT_BLOCKS_PER_SM")) t.persistentBlocksPerSm = std::atoi(value);
    if (const char *value = std::getenv("LLAMAC_TIMELINE")) t.timeline = value;
    return t;
  }
};

struct Program {
  std::vector<Launch> launches;
  CUgraphExec graph = nullptr;
  uint64_t outputOffset = 0, outputBytes = 0;
};

// The step scalars in device memory (and their pinned host mirror), int32
// slots: the token, the position, and from kHistorySlot the first position
// of a run of chains followed by one token per chained step, room for every
// position of the KV cache (so a chain running ahead never overwrites the
// tokens the host is reading).
constexpr int kTokenSlot = 0, kPosSlot = 1, kHistorySlot = 16;
constexpr int kMaxChain = 64;
constexpr int kChainDefault = 16;
constexpr uint64_t scalarsBytes(uint64_t seqLen) { return 4 * (kHistorySlot + 1 + seqLen); }

/// LLAMAC_TIMELINE's buffer: a 64-byte header (the record count) and the
/// records, 48 bytes each (common.cuh's TimelineRecord).
constexpr uint64_t kTimelineCapacity = 1 << 20, kTimelineRecordBytes = 48;

class CudaEngine : public Engine {
public:
  CudaEngine(const CudaDriver &driver, DeviceInfo device, CudaRank rank = {})
      : cu(driver), device_(std::move(device)), rank_(std::move(rank)) {}
  ~CudaEngine() override;

  llvm::Error init(const LoadedPlan &plan, llvm::raw_ostream *log);

  std::string deviceName() const override {
    return llvm::formatv("cuda: {0} ({1}{2})", device_.name, device_.smArch(),
                         dependentLaunch_ ? ", programmatic dependent launch" : "")
        .str();
  }

  llvm::Expected<int> stepGreedy(int token, int pos) override {
    if (auto e = run(greedy_, token, pos)) return e;
    int next;
    std::memcpy(&next, hostOutput_, 4);
    return next;
  }

  llvm::Expected<llvm::MutableArrayRef<float>> stepLogits(int token, int pos) override {
    if (auto e = run(logits_, token, pos)) return e;
    return llvm::MutableArrayRef<float>(reinterpret_cast<float *>(hostOutput_), logits_.outputBytes / 4);
  }

  llvm::Expected<llvm::ArrayRef<int>> stepsGreedy(int token, int pos, int count, int then) override;
  int greedyChainLength() const override { return chain_ ? chainLength_ : 1; }

  llvm::Expected<double> timeGreedySteps(int token, int firstPos, int steps) override;
  llvm::Expected<double> copyBandwidth() override;

  uint64_t arenaBytes() const override { return arenaBytes_; }
  uint64_t kvCacheBytes() const override { return kvBytes_; }

private:
  llvm::Error loadKernels(const LoadedPlan &plan, llvm::raw_ostream *log, std::vector<CUfunction> &functions);
  llvm::Error uploadWeights(const LoadedPlan &plan, llvm::raw_ostream *log);
  /// Resolves f's launches into `program`; with `ownGraph`, also captures
  /// them as the program's graph (the chain's parts run only in captureChain's).
  llvm::Error prepare(const plan::Function &f, const std::vector<CUfunction> &functions, Program &program,
                      bool ownGraph);
  /// Whether the plan chains with greedy_chain_start and greedy_chain_step
  /// (else with @decode_greedy and advance_greedy).
  bool chainsWholeSteps() const { return !chainStart_.launches.empty() && !chainStep_.launches.empty(); }
  llvm::Error launchAll(const Program &program);
  llvm::Error run(const Program &program, int token, int pos);
  llvm::Error checkStep(int token, int pos) const;
  /// Captures what `launches` launches on the stream as `exec`, uploaded.
  llvm::Error capture(llvm::function_ref<llvm::Error()> launches, CUgraphExec &exec);
  /// Captures greedy_chain_start, then chainLength_ x greedy_chain_step, as
  /// one graph; or chainLength_ x (@decode_greedy, advance_greedy).
  llvm::Error captureChain();
  /// Launches the chain for positions [pos, pos + chainLength_) and, on the
  /// copy stream once it has run, its tokens' copy to the host, with the
  /// events of `slot` (0 or 1) after each (the scalars already set).
  llvm::Error launchChain(int pos, int slot);
  /// The scalar slot of the token produced at position `pos`: p + 1 - the
  /// run's first position (history[0], which only stepsGreedy writes, from
  /// its host mirror).
  int historySlotOf(int pos) const { return kHistorySlot + 1 + pos - hostScalars_[kHistorySlot]; }
  /// Forgets the chain running ahead, once it has finished (a step that does
  /// not continue it changes what it computed from). Every path that writes
  /// the step scalars or steps otherwise calls it first: a chain taken as
  /// announced trusts the token and position the device holds.
  llvm::Error dropChainAhead();
  /// After a failed launch or wait: lets both streams finish what they were
  /// given and forgets the chain ahead, then returns `e`.
  llvm::Error abandonChains(llvm::Error e);
  /// Writes LLAMAC_TIMELINE's records and kernel names.
  void writeTimeline();

  const CudaDriver &cu;
  DeviceInfo device_;
  CudaRank rank_;
  CUcontext context_ = nullptr;
  CUstream stream_ = nullptr;
  std::vector<CUmodule> modules_;
  CUdeviceptr weights_ = 0, arena_ = 0, kv_ = 0, scalars_ = 0, timeline_ = 0;
  uint64_t arenaBytes_ = 0, kvBytes_ = 0, seqLen_ = 0, vocab_ = 0;
  int32_t *hostScalars_ = nullptr; // pinned: the step scalars (kTokenSlot, ...)
  char *hostOutput_ = nullptr;     // pinned: the step's output
  Program logits_, greedy_, advance_, chainStart_, chainStep_;
  CUgraphExec chain_ = nullptr;
  int chainLength_ = 0;
  /// The chain launched ahead (pos -1: none), the token it continues from
  /// once the host has read it, and its event slot; per slot (one per chain
  /// in flight) an event when the chain has run (chainRan_) and one when its
  /// tokens are copied (chainDone_, on copyStream_).
  struct {
    int pos = -1, token = -1, slot = 0;
  } ahead_;
  CUstream copyStream_ = nullptr;
  CUevent chainRan_[2] = {}, chainDone_[2] = {};
  std::vector<std::string> kernelNames_;
  bool syncEachLaunch_ = false;
  bool dependentLaunch_ = false;
  Tuning tuning_ = Tuning::fromEnvironment();
};

CudaEngine::~CudaEngine() {
  if (stream_) cu.streamSynchronize(stream_); // a chain may still run ahead
  if (copyStream_) cu.streamSynchronize(copyStream_);
  for (CUevent e : {chainRan_[0], chainRan_[1], chainDone_[0], chainDone_[1]})
    if (e) cu.eventDestroy(e);
  if (copyStream_) cu.streamDestroy(copyStream_);
  for (Program *p : {&logits_, &greedy_, &advance_, &chainStart_, &chainStep_})
    if (p->graph) cu.graphExecDestroy(p->graph);
  if (chain_) cu.graphExecDestroy(chain_);
  if (timeline_) writeTimeline();
  for (CUdeviceptr ptr : {weights_, arena_, kv_, scalars_, timeline_})
    if (ptr) cu.memFree(ptr);
  if (hostScalars_) cu.memFreeHost(hostScalars_);
  if (hostOutput_) cu.memFreeHost(hostOutput_);
  for (CUmodule m : modules_) cu.moduleUnload(m);
  if (stream_) cu.streamDestroy(stream_);
  if (context_) cu.devicePrimaryCtxRelease(device_.ordinal);
}

llvm::Error CudaEngine::init(const LoadedPlan &plan, llvm::raw_ostream *log) {
  const plan::Plan &p = plan.plan;
  if (p.kernels().empty()) return error("the plan holds no CUDA kernels (compile it with a llamac that emits them)");
  auto flag = [](const char *name) { return std::getenv(name) && std::string(std::getenv(name)) == "1"; };
  syncEachLaunch_ = flag("LLAMAC_CUDA_SYNC");
  dependentLaunch_ = device_.computeMajor >= 9 && !flag("LLAMAC_NO_PDL") && !syncEachLaunch_;
  CUdevice dev;
  if (auto e = cu.check(cu.deviceGet(&dev, device_.ordinal), "cuDeviceGet")) return e;
  if (auto e = cu.check(cu.devicePrimaryCtxRetain(&context_, dev), "cuDevicePrimaryCtxRetain")) return e;
  if (auto e = cu.check(cu.ctxSetCurrent(context_), "cuCtxSetCurrent")) return e;
  if (auto e = cu.check(cu.streamCreate(&stream_, CU_STREAM_NON_BLOCKING), "cuStreamCreate")) return e;

  if (!tuning_.timeline.empty()) {
    const uint64_t bytes = 64 + kTimelineCapacity * kTimelineRecordBytes;
    if (auto e = cu.check(cu.memAlloc(&timeline_, bytes), "cuMemAlloc(timeline)")) return e;
    if (auto e = cu.check(cu.memsetD8(timeline_, 0, bytes), "cuMemsetD8(timeline)")) return e;
  }
  std::vector<CUfunction> functions;
  if (auto e = loadKernels(plan, log, functions)) return e;
  if (auto e = uploadWeights(plan, log)) return e;

  arenaBytes_ = p.memory().arena_bytes();
  kvBytes_ = p.memory().kv_cache_bytes();
  seqLen_ = p.config().seq_len();
  vocab_ = p.config().vocab_size();
  if (auto e = cu.check(cu.memAlloc(&arena_, std::max<uint64_t>(arenaBytes_, 256)), "cuMemAlloc(arena)")) return e;
  // Zeroed once: kernels that keep state between steps (attention's counters)
  // start from zero and leave it zero.
  if (auto e = cu.check(cu.memsetD8(arena_, 0, std::max<uint64_t>(arenaBytes_, 256)), "cuMemsetD8(arena)")) return e;
  if (auto e = cu.check(cu.memAlloc(&kv_, std::max<uint64_t>(kvBytes_, 256)), "cuMemAlloc(KV cache)")) return e;
  if (auto e = cu.check(cu.memsetD8(kv_, 0, std::max<uint64_t>(kvBytes_, 256)), "cuMemsetD8(KV cache)")) return e;
  const uint64_t scalarBytes = scalarsBytes(seqLen_);
  if (auto e = cu.check(cu.memAlloc(&scalars_, scalarBytes), "cuMemAlloc(step scalars)")) return e;
  if (auto e = cu.check(cu.memsetD8(scalars_, 0, scalarBytes), "cuMemsetD8(step scalars)")) return e;
  if (auto e = cu.check(cu.memHostAlloc(reinterpret_cast<void **>(&hostScalars_), scalarBytes, 0),
                        "cuMemHostAlloc"))
    return e;

  if (rank_.collective) {
    // NCCL connects the ranks on their first collective: do it once here,
    // eagerly on every rank, rather than while capturing.
    plan::Function::Launch::Collective warmUp;
    warmUp.set_kind(plan::Function::Launch::Collective::ALL_REDUCE_SUM);
    warmUp.set_bytes(256);
    if (auto e = rank_.collective(warmUp, arena_, stream_)) return e;
    if (auto e = cu.check(cu.streamSynchronize(stream_), "cuStreamSynchronize(first collective)")) return e;
  }
  uint64_t outputBytes = 0;
  for (const plan::Function &f : p.functions()) {
    Program *program = f.name() == "decode"               ? &logits_
                       : f.name() == "decode_greedy"      ? &greedy_
                       : f.name() == "advance_greedy"     ? &advance_
                       : f.name() == "greedy_chain_start" ? &chainStart_
                       : f.name() == "greedy_chain_step"  ? &chainStep_
                                                          : nullptr;
    if (!program) continue;
    if (auto e = prepare(f, functions, *program, program == &logits_ || program == &greedy_)) return e;
    outputBytes = std::max(outputBytes, program->outputBytes);
  }
  if (logits_.launches.empty() || greedy_.launches.empty())
    return error("the plan has no launch list for @decode and @decode_greedy");
  chainLength_ = kChainDefault;
  if (const char *value = std::getenv("LLAMAC_CHAIN")) {
    chainLength_ = std::atoi(value);
    if (chainLength_ < 1 || chainLength_ > kMaxChain)
      return error(llvm::formatv("LLAMAC_CHAIN={0}: expected a chain length from 1 to {1}", value, kMaxChain));
  }
  // Plans from before advance_greedy, LLAMAC_CUDA_SYNC=1 and the ranks of a
  // tensor parallel plan (whose engine steps them together) step one by one.
  if (chainLength_ > 1 && (chainsWholeSteps() || !advance_.launches.empty()) && !syncEachLaunch_ &&
      !rank_.collective) {
    if (auto e = captureChain()) return e;
    for (CUevent *event : {&chainRan_[0], &chainRan_[1], &chainDone_[0], &chainDone_[1]})
      if (auto e = cu.check(cu.eventCreate(event, CU_EVENT_DISABLE_TIMING), "cuEventCreate(chain)")) return e;
    if (auto e = cu.check(cu.streamCreate(&copyStream_, CU_STREAM_NON_BLOCKING), "cuStreamCreate(token copies)"))
      return e;
  }
  if (auto e = cu.check(cu.memHostAlloc(reinterpret_cast<void **>(&hostOutput_), outputBytes, 0), "cuMemHostAlloc"))
    return e;
  return llvm::Error::success();
}

llvm::Error CudaEngine::loadKernels(const LoadedPlan &plan, llvm::raw_ostream *log,
                                    std::vector<CUfunction> &functions) {
  std::string arch = device_.smArch();
  const auto &kernels = plan.plan.kernels();
  std::vector<std::string> images(kernels.size());
  std::vector<size_t> missing;
  const std::vector<std::string> &options = tuning_.nvrtcOptions;
  auto recompiled = [&](const std::string &name) {
    if (timeline_) return true;
    return !options.empty() && (tuning_.nvrtcKernels.empty() ||
                                llvm::any_of(tuning_.nvrtcKernels, [&](const std::string &part) {
                                  return name.find(part) != std::string::npos;
                                }));
  };
  for (int i = 0; i < kernels.size(); ++i) {
    if (!recompiled(kernels[i].name()))
      for (const auto &binary : kernels[i].binaries())
        if (binary.arch() == arch) images[i] = binary.cubin();
    if (images[i].empty()) missing.push_back(i);
  }
  if (!missing.empty() && log) {
    if (timeline_) {
      *log << llvm::formatv("llamarun: LLAMAC_TIMELINE is set; recompiling {0} kernels from source with NVRTC\n",
                            missing.size());
    } else if (!options.empty()) {
      *log << llvm::formatv("llamarun: LLAMAC_NVRTC_OPTIONS is set; recompiling {0} kernels from source with NVRTC\n",
                            missing.size());
    } else {
      std::string have;
      for (const auto &binary : kernels[0].binaries()) have += (have.empty() ? "" : ", ") + binary.arch();
      *log << llvm::formatv("llamarun: the plan has no cubin for this GPU's {0} (it has {1}); recompiling {2} kernels "
                            "from source with NVRTC\n",
                            arch, have.empty() ? "none" : have, missing.size());
    }
  }
  if (!missing.empty()) {
    std::vector<llvm::Expected<CompiledKernel>> compiled;
    compiled.reserve(missing.size());
    const std::vector<std::string> none;
    for (size_t i : missing) { // kernels only missing for this GPU compile as the plan's were
      std::vector<std::string> kernelOptions = recompiled(kernels[i].name()) ? options : none;
      if (timeline_) {
        kernelOptions.push_back(llvm::formatv("-DLLAMAC_TIMELINE={0}ull", timeline_).str());
        kernelOptions.push_back(llvm::formatv("-DLLAMAC_TIMELINE_CAPACITY={0}u", kTimelineCapacity).str());
        kernelOptions.push_back(llvm::formatv("-DLLAMAC_TIMELINE_KERNEL={0}u", i).str());
      }
      compiled.push_back(compileCuda(kernels[i].source(), kernels[i].name(), arch, kernelOptions));
    }
    for (size_t j = 0; j < missing.size(); ++j) {
      if (!compiled[j]) return error("recompiling " + kernels[missing[j]].name() + ": " +
                                     llvm::toString(compiled[j].takeError()));
      images[missing[j]] = compiled[j]->image;
    }
  }
  for (int i = 0; i < kernels.size(); ++i) {
    auto module = cu.loadModule(images[i], kernels[i].name());
    if (!module) return module.takeError();
    modules_.push_back(*module);
    CUfunction fn;
    if (auto e = cu.check(cu.moduleGetFunction(&fn, *module, kernels[i].name().c_str()),
                          "cuModuleGetFunction(" + kernels[i].name() + ")"))
      return e;
    functions.push_back(fn);
    kernelNames_.push_back(kernels[i].name());
  }
  return llvm::Error::success();
}

llvm::Error CudaEngine::uploadWeights(const LoadedPlan &plan, llvm::raw_ostream *log) {
  llvm::StringRef bytes = plan.weightsOf(rank_.rank);
  uint64_t total = bytes.size();
  if (auto e = cu.check(cu.memAlloc(&weights_, std::max<uint64_t>(total, 256)), "cuMemAlloc(weights)")) return e;
  // Two pinned staging buffers: one is filled from the mapped file while the
  // other is being copied to the GPU.
  constexpr size_t kChunk = 64 << 20;
  char *staging[2] = {nullptr, nullptr};
  CUevent done[2] = {nullptr, nullptr};
  auto cleanup = [&] {
    for (int i = 0; i < 2; ++i) {
      if (done[i]) cu.eventDestroy(done[i]);
      if (staging[i]) cu.memFreeHost(staging[i]);
    }
  };
  for (int i = 0; i < 2; ++i) {
    if (auto e = cu.check(cu.memHostAlloc(reinterpret_cast<void **>(&staging[i]), kChunk, 0), "cuMemHostAlloc")) {
      cleanup();
      return e;
    }
    if (auto e = cu.check(cu.eventCreate(&done[i], CU_EVENT_DISABLE_TIMING), "cuEventCreate")) {
      cleanup();
      return e;
    }
  }
  bool showProgress = log && total >= (1ull << 30);
  uint64_t nextReport = total / 10;
  for (uint64_t offset = 0, chunk = 0; offset < total; offset += kChunk, ++chunk) {
    int slot = chunk % 2;
    size_t n = std::min<uint64_t>(kChunk, total - offset);
    if (auto e = cu.check(cu.eventSynchronize(done[slot]), "cuEventSynchronize")) {
      cleanup();
      return e;
    }
    std::memcpy(staging[slot], bytes.data() + offset, n);
    if (auto e = cu.check(cu.memcpyHtoDAsync(weights_ + offset, staging[slot], n, stream_), "cuMemcpyHtoDAsync")) {
      cleanup();
      return e;
    }
    cu.eventRecord(done[slot], stream_);
    if (showProgress && offset + n >= nextReport) {
      *log << llvm::formatv("llamarun: uploading weights {0,3}% ({1:f1} of {2:f1} GB)\n", 100 * (offset + n) / total,
                            (offset + n) / 1e9, total / 1e9);
      nextReport += total / 10;
    }
  }
  llvm::Error e = cu.check(cu.streamSynchronize(stream_), "cuStreamSynchronize(weights upload)");
  cleanup();
  return e;
}

llvm::Error CudaEngine::prepare(const plan::Function &f, const std::vector<CUfunction> &functions,
                                Program &program, bool ownGraph) {
  program.outputOffset = f.output().offset();
  program.outputBytes = f.output().bytes();
  if (program.outputOffset + program.outputBytes > arenaBytes_)
    return error("@" + f.name() + ": its output lies outside the arena");
  for (const auto &l : f.launches()) {
    if (l.has_collective() && l.collective().kind() != plan::Function::Launch::Collective::NONE) {
      if (!rank_.collective) return error("@" + f.name() + ": a collective in a plan run on one GPU");
      Launch launch;
      launch.name = plan::Function::Launch::Collective::Kind_Name(l.collective().kind());
      launch.collective = l.collective();
      program.launches.push_back(std::move(launch));
      continue;
    }
    if (l.kernel() >= functions.size()) return error("@" + f.name() + ": a launch names a kernel the plan lacks");
    if (llvm::any_of(tuning_.skipKernels,
                     [&](const std::string &s) { return llvm::StringRef(kernelNames_[l.kernel()]).contains(s); }))
      continue; // a timing experiment (Tuning)
    Launch launch;
    launch.function = functions[l.kernel()];
    launch.name = kernelNames_[l.kernel()];
    launch.grid[0] = l.grid_x(), launch.grid[1] = std::max(1u, l.grid_y()), launch.grid[2] = std::max(1u, l.grid_z());
    launch.block[0] = l.block_x(), launch.block[1] = std::max(1u, l.block_y()),
    launch.block[2] = std::max(1u, l.block_z());
    launch.sharedBytes = l.shared_bytes();
    // How many of the launch's blocks fit on one SM at once.
    auto blocksPerSm = [&](int &perSm) {
      return cu.check(cu.occupancyMaxActiveBlocksPerMultiprocessor(&perSm, launch.function, launch.block[0],
                                                                    launch.sharedBytes),
                      "cuOccupancyMaxActiveBlocksPerMultiprocessor(" + launch.name + ")");
    };
    if (l.persistent()) {
      // As many blocks as the GPU holds at once: the phases wait for one another.
      int perSm = 0;
      if (auto e = blocksPerSm(perSm)) return e;
      if (perSm < 1) return error("@" + f.name() + ": the persistent kernel " + launch.name + " fits on no SM");
      if (tuning_.persistentBlocksPerSm > 0) perSm = std::min(perSm, tuning_.persistentBlocksPerSm);
      launch.persistent = true;
      launch.grid[0] = unsigned(perSm * device_.multiprocessors);
      launch.grid[1] = launch.grid[2] = 1;
    } else if (l.grid_stride() && tuning_.gridStrideBlocksPerSm != 0) {
      // One wave: every block is resident from the start, so the next kernel
      // launches while this one runs (its blocks loop over the work).
      int perSm = 0;
      if (auto e = blocksPerSm(perSm)) return e;
      if (tuning_.gridStrideBlocksPerSm > 0) perSm = std::min(perSm, tuning_.gridStrideBlocksPerSm);
      if (perSm >= 1) launch.grid[0] = std::min(launch.grid[0], unsigned(perSm * device_.multiprocessors));
    }
    for (const auto &arg : l.args()) {
      uint64_t slot = 0;
      auto pointer = [&](CUdeviceptr base, uint64_t size, const char *what) -> llvm::Error {
        if (arg.offset() > size) return error(llvm::formatv("@{0}: an argument points past the {1}", f.name(), what));
        slot = base + arg.offset();
        return llvm::Error::success();
      };
      llvm::Error e = llvm::Error::success();
      switch (arg.kind()) {
      case plan::Function::Launch::Arg::ARENA: e = pointer(arena_, arenaBytes_, "arena"); break;
      case plan::Function::Launch::Arg::WEIGHT: e = pointer(weights_, uint64_t(-1), "weights"); break;
      case plan::Function::Launch::Arg::KV_CACHE: e = pointer(kv_, kvBytes_, "KV cache"); break;
      case plan::Function::Launch::Arg::TOKEN: slot = scalars_ + 4 * kTokenSlot; break;
      case plan::Function::Launch::Arg::POS: slot = scalars_ + 4 * kPosSlot; break;
      case plan::Function::Launch::Arg::HISTORY: slot = scalars_ + 4 * kHistorySlot; break;
      case plan::Function::Launch::Arg::RANK: slot = rank_.rank; break;
      case plan::Function::Launch::Arg::INT_SCALAR: {
        int32_t v = int32_t(arg.int_value());
        std::memcpy(&slot, &v, 4);
        break;
      }
      case plan::Function::Launch::Arg::FLOAT_SCALAR: {
        float v = arg.float_value();
        std::memcpy(&slot, &v, 4);
        break;
      }
      default: e = error("@" + f.name() + ": unknown launch argument kind");
      }
      if (e) return e;
      launch.storage.push_back(slot);
    }
    program.launches.push_back(std::move(launch));
  }
  for (Launch &launch : program.launches)
    for (uint64_t &slot : launch.storage) launch.params.push_back(&slot);
  if (syncEachLaunch_ || !ownGraph) return llvm::Error::success();

  // Capture the launch list once; each step replays it.
  return capture([&] { return launchAll(program); }, program.graph);
}

void CudaEngine::writeTimeline() {
  uint32_t count = 0;
  bool copied = cu.ctxSynchronize() == CUDA_SUCCESS && cu.memcpyDtoH(&count, timeline_, 4) == CUDA_SUCCESS;
  count = std::min<uint64_t>(count, kTimelineCapacity);
  std::vector<char> records(count * kTimelineRecordBytes);
  if (copied && count) copied = cu.memcpyDtoH(records.data(), timeline_ + 64, records.size()) == CUDA_SUCCESS;
  std::error_code outError, namesError;
  llvm::raw_fd_ostream out(tuning_.timeline, outError), names(tuning_.timeline + ".names", namesError);
  if (!copied || outError || namesError) {
    llvm::errs() << "llamarun: LLAMAC_TIMELINE: could not write " << tuning_.timeline << "\n";
    return;
  }
  out.write(records.data(), records.size());
  for (const std::string &name : kernelNames_) names << name << "\n";
}

llvm::Error CudaEngine::capture(llvm::function_ref<llvm::Error()> launches, CUgraphExec &exec) {
  if (auto e = cu.check(cu.streamBeginCapture(stream_, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL), "cuStreamBeginCapture"))
    return e;
  llvm::Error launched = launches();
  CUgraph graph = nullptr;
  llvm::Error ended = cu.check(cu.streamEndCapture(stream_, &graph), "cuStreamEndCapture");
  if (launched) {
    llvm::consumeError(std::move(ended));
    return launched;
  }
  if (ended) return ended;
  llvm::Error instantiated = cu.check(cu.graphInstantiate(&exec, graph, 0), "cuGraphInstantiate");
  cu.graphDestroy(graph);
  if (instantiated) return instantiated;
  return cu.check(cu.graphUpload(exec, stream_), "cuGraphUpload");
}

llvm::Error CudaEngine::launchAll(const Program &program) {
  bool afterCollective = false;
  for (size_t i = 0; i < program.launches.size(); ++i) {
    const Launch &l = program.launches[i];
    if (l.collective) {
      std::string what = llvm::formatv("{0} (launch {1})", l.name, i).str();
      if (auto e = rank_.collective(*l.collective, arena_, stream_))
        return error(what + ": " + llvm::toString(std::move(e)));
      if (syncEachLaunch_)
        if (auto e = cu.check(cu.streamSynchronize(stream_), what + " (synchronized)")) return e;
      afterCollective = true;
      continue;
    }
    std::string what = llvm::formatv("cuLaunchKernel({0}, launch {1})", l.name, i).str();
    CUlaunchAttribute attribute = {};
    if (l.persistent) {
      attribute.id = CU_LAUNCH_ATTRIBUTE_COOPERATIVE;
      attribute.value.cooperative = 1;
    } else {
      attribute.id = CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
      attribute.value.programmaticStreamSerializationAllowed = 1;
    }
    CUlaunchConfig config = {};
    config.gridDimX = l.grid[0], config.gridDimY = l.grid[1], config.gridDimZ = l.grid[2];
    config.blockDimX = l.block[0], config.blockDimY = l.block[1], config.blockDimZ = l.block[2];
    config.sharedMemBytes = l.sharedBytes;
    config.hStream = stream_;
    config.attrs = &attribute;
    config.numAttrs = l.persistent || (dependentLaunch_ && !afterCollective) ? 1 : 0;
    afterCollective = false;
    if (auto e = cu.check(cu.launchKernelEx(&config, l.function, const_cast<void **>(l.params.data()), nullptr),
                          what))
      return e;
    if (syncEachLaunch_)
      if (auto e = cu.check(cu.streamSynchronize(stream_), what + " (synchronized)")) return e;
  }
  return llvm::Error::success();
}

llvm::Error CudaEngine::checkStep(int token, int pos) const {
  if (pos < 0 || uint64_t(pos) >= seqLen_)
    return error(llvm::formatv("position {0} is outside the KV cache's {1} positions", pos, seqLen_));
  if (token < 0 || uint64_t(token) >= vocab_)
    return error(llvm::formatv("token {0} is outside the vocabulary of {1}", token, vocab_));
  return llvm::Error::success();
}

llvm::Error CudaEngine::captureChain() {
  return capture(
      [&]() -> llvm::Error {
        if (chainsWholeSteps()) {
          if (auto e = launchAll(chainStart_)) return e;
          for (int i = 0; i < chainLength_; ++i)
            if (auto e = launchAll(chainStep_)) return e;
          return llvm::Error::success();
        }
        for (int i = 0; i < chainLength_; ++i) {
          if (auto e = launchAll(greedy_)) return e;
          if (auto e = launchAll(advance_)) return e;
        }
        return llvm::Error::success();
      },
      chain_);
}

llvm::Error CudaEngine::launchChain(int pos, int slot) {
  if (auto e = cu.check(cu.graphLaunch(chain_, stream_), "cuGraphLaunch(chain)")) return e;
  if (auto e = cu.check(cu.eventRecord(chainRan_[slot], stream_), "cuEventRecord(chain)")) return e;
  if (auto e = cu.check(cu.streamWaitEvent(copyStream_, chainRan_[slot], 0), "cuStreamWaitEvent(chain)")) return e;
  const int first = historySlotOf(pos);
  if (auto e = cu.check(cu.memcpyDtoHAsync(hostScalars_ + first, scalars_ + 4 * first, 4 * chainLength_,
                                           copyStream_),
                        "cuMemcpyDtoHAsync(chained tokens)"))
    return e;
  return cu.check(cu.eventRecord(chainDone_[slot], copyStream_), "cuEventRecord(chain)");
}

llvm::Error CudaEngine::abandonChains(llvm::Error e) {
  cu.streamSynchronize(stream_);
  cu.streamSynchronize(copyStream_);
  ahead_.pos = -1;
  return e;
}

llvm::Error CudaEngine::dropChainAhead() {
  if (ahead_.pos < 0) return llvm::Error::success();
  ahead_.pos = -1;
  return cu.check(cu.eventSynchronize(chainDone_[ahead_.slot]),
                  "cuEventSynchronize (the chain run ahead; a kernel failed, LLAMAC_CUDA_SYNC=1 names it)");
}

llvm::Expected<llvm::ArrayRef<int>> CudaEngine::stepsGreedy(int token, int pos, int count, int then) {
  if (!chain_ || count != chainLength_) {
    if (auto e = dropChainAhead()) return e;
    return Engine::stepsGreedy(token, pos, count, then);
  }
  if (auto e = checkStep(token, pos)) return e;
  if (uint64_t(pos) + count > seqLen_)
    return error(llvm::formatv("positions {0} to {1} are outside the KV cache's {2} positions", pos, pos + count - 1,
                               seqLen_));
  int slot = 0;
  if (ahead_.pos == pos && ahead_.token == token) {
    slot = ahead_.slot; // this chain is already running
    ahead_.pos = -1;
  } else {
    if (auto e = dropChainAhead()) return e;
    hostScalars_[kTokenSlot] = token;
    hostScalars_[kPosSlot] = pos;
    hostScalars_[kHistorySlot] = pos;
    if (auto e = cu.check(cu.memcpyHtoDAsync(scalars_, hostScalars_, 4 * (kHistorySlot + 1), stream_),
                          "cuMemcpyHtoDAsync(step scalars)"))
      return e;
    if (auto e = launchChain(pos, slot)) return abandonChains(std::move(e));
  }
  // The next chain reads the token and position this one leaves on the
  // device; its tokens land after these, in slots the host is not reading.
  if (then == chainLength_ && uint64_t(pos) + count + then <= seqLen_) {
    ahead_.slot = 1 - slot;
    if (auto e = launchChain(pos + count, ahead_.slot)) return abandonChains(std::move(e));
    ahead_.pos = pos + count;
  }
  if (auto e = cu.check(cu.eventSynchronize(chainDone_[slot]),
                        "cuEventSynchronize (a kernel failed; LLAMAC_CUDA_SYNC=1 names it)"))
    return abandonChains(std::move(e));
  llvm::ArrayRef<int> tokens(hostScalars_ + historySlotOf(pos), count);
  ahead_.token = tokens.back();
  return tokens;
}

llvm::Error CudaEngine::run(const Program &program, int token, int pos) {
  if (auto e = checkStep(token, pos)) return e;
  if (auto e = dropChainAhead()) return e;
  hostScalars_[kTokenSlot] = token;
  hostScalars_[kPosSlot] = pos;
  if (auto e = cu.check(cu.memcpyHtoDAsync(scalars_, hostScalars_, 8, stream_), "cuMemcpyHtoDAsync(token, pos)"))
    return e;
  if (program.graph) {
    if (auto e = cu.check(cu.graphLaunch(program.graph, stream_), "cuGraphLaunch")) return e;
  } else if (auto e = launchAll(program)) {
    return e;
  }
  if (auto e = cu.check(cu.memcpyDtoHAsync(hostOutput_, arena_ + program.outputOffset, program.outputBytes, stream_),
                        "cuMemcpyDtoHAsync(output)"))
    return e;
  return cu.check(cu.streamSynchronize(stream_), "cuStreamSynchronize (a kernel failed; LLAMAC_CUDA_SYNC=1 names it)");
}

/// Milliseconds between two events recorded around `body` on the stream.
template <typename Body>
llvm::Expected<double> timeOnStream(const CudaDriver &cu, CUstream stream, Body &&body) {
  CUevent start = nullptr, stop = nullptr;
  auto destroy = [&] {
    if (start) cu.eventDestroy(start);
    if (stop) cu.eventDestroy(stop);
  };
  if (auto e = cu.check(cu.eventCreate(&start, CU_EVENT_DEFAULT), "cuEventCreate")) return e;
  if (auto e = cu.check(cu.eventCreate(&stop, CU_EVENT_DEFAULT), "cuEventCreate")) {
    destroy();
    return e;
  }
  llvm::Error e = cu.check(cu.eventRecord(start, stream), "cuEventRecord");
  if (!e) e = body();
  if (!e) e = cu.check(cu.eventRecord(stop, stream), "cuEventRecord");
  if (!e) e = cu.check(cu.eventSynchronize(stop), "cuEventSynchronize");
  float ms = 0;
  if (!e) e = cu.check(cu.eventElapsedTime(&ms, start, stop), "cuEventElapsedTime");
  destroy();
  if (e) return e;
  return double(ms);
}

llvm::Expected<double> CudaEngine::timeGreedySteps(int token, int firstPos, int steps) {
  // As the decode loop runs: chains of steps, each read back by the host,
  // so the events bracket exactly what a user waits for (the last call
  // waits for its tokens' copy on the host before the stop is recorded).
  return timeOnStream(cu, stream_, [&] { return runGreedySteps(token, firstPos, steps); });
}

llvm::Expected<double> CudaEngine::copyBandwidth() {
  constexpr size_t kBytes = size_t(1) << 30;
  constexpr int kRepeats = 10;
  CUdeviceptr a = 0, b = 0;
  auto release = [&] {
    if (a) cu.memFree(a);
    if (b) cu.memFree(b);
  };
  if (auto e = cu.check(cu.memAlloc(&a, kBytes), "cuMemAlloc(bandwidth test)")) return e;
  if (auto e = cu.check(cu.memAlloc(&b, kBytes), "cuMemAlloc(bandwidth test)")) {
    release();
    return e;
  }
  // Never time zeros: fill the source with a pattern first.
  llvm::Error e = cu.check(cu.memsetD32Async(a, 0x3f8ccccd, kBytes / 4, stream_), "cuMemsetD32Async");
  if (!e) e = cu.check(cu.memcpyDtoDAsync(b, a, kBytes, stream_), "cuMemcpyDtoDAsync"); // warm-up
  if (e) {
    release();
    return e;
  }
  auto ms = timeOnStream(cu, stream_, [&]() -> llvm::Error {
    for (int i = 0; i < kRepeats; ++i)
      if (auto e = cu.check(cu.memcpyDtoDAsync(i % 2 ? a : b, i % 2 ? b : a, kBytes, stream_), "cuMemcpyDtoDAsync"))
        return e;
    return llvm::Error::success();
  });
  release();
  if (!ms) return ms.takeError();
  return 2.0 * kBytes * kRepeats / (*ms / 1000.0);
}

} // namespace

llvm::Expected<std::unique_ptr<Engine>> createCudaEngine(const LoadedPlan &plan, const PlanProgram &program,
                                                         llvm::raw_ostream *log) {
  if (plan.plan.tensor_parallel() > 0) return createTensorParallelEngine(plan, program, log);
  auto driver = CudaDriver::load();
  if (!driver) return driver.takeError();
  auto count = driver->deviceCount();
  if (!count) return count.takeError();
  if (*count == 0) return error("no CUDA device");
  auto info = driver->deviceInfo(0);
  if (!info) return info.takeError();
  auto engine = std::make_unique<CudaEngine>(*driver, *info);
  if (auto e = engine->init(plan, log)) return e;
  return std::unique_ptr<Engine>(std::move(engine));
}

llvm::Expected<std::unique_ptr<Engine>> createCudaRankEngine(const LoadedPlan &plan, const PlanProgram &program,
                                                             CudaRank rank, llvm::raw_ostream *log) {
  auto driver = CudaDriver::load();
  if (!driver) return driver.takeError();
  auto info = driver->deviceInfo(rank.device);
  if (!info) return info.takeError();
  auto engine = std::make_unique<CudaEngine>(*driver, *info, std::move(rank));
  if (auto e = engine->init(plan, log)) return e;
  return std::unique_ptr<Engine>(std::move(engine));
}

} // namespace llamac::runtime::cuda
