#include "codegen/CudaCodegen.h"

#include "codegen/KernelWrappers.h"
#include "codegen/kernels/attention.cuh"
#include "codegen/kernels/matmul_argmax.cuh"
#include "codegen/kernels/argmax.cuh"
#include "codegen/kernels/argmax_shard.cuh"
#include "codegen/kernels/embedding.cuh"
#include "codegen/kernels/gemv.cuh"
#include "codegen/kernels/persistent.cuh"
#include "codegen/kernels/rmsnorm.cuh"
#include "codegen/kernels/rms_normalize.cuh"
#include "codegen/kernels/matmul.cuh"
#include "codegen/kernels/matmul_add.cuh"
#include "codegen/kernels/matmul_swiglu.cuh"
#include "codegen/kernels/matmul_qkv.cuh"
#include "codegen/kernels/matmul_qkv_rope_kv.cuh"
#include "codegen/kernels/rope.cuh"
#include "codegen/kernels/kv_write.cuh"
#include "codegen/kernels/silu_mul.cuh"
#include "codegen/kernels/add.cuh"
#include "codegen/kernels/advance.cuh"
#include "codegen/kernels/slice.cuh"
#include "ir/Printer.h"
#include "runtime/cuda/Nvrtc.h"

#include "llvm/ADT/StringMap.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/ThreadPool.h"

#include <mutex>

namespace llamac::codegen {

using namespace ir;
using Arg = plan::Function::Launch::Arg;
using Collective = plan::Function::Launch::Collective;

namespace {

/// Contexts up to one chunk use the one-block-per-head attention; longer ones
/// split the sequence over blocks (flash-decoding), which costs the same
/// while pos is within the first chunk.
constexpr int64_t kSplitAttentionFrom = launch::kAttentionChunk + 1;

llvm::Error error(const llvm::Twine &msg) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), msg);
}

class Emitter {
public:
  Emitter(const Module &m, plan::Plan &plan, const CudaOptions &options)
      : m_(m), plan_(plan), gemvSplit_(options.gemvSplit), attentionParts_(options.attentionParts),
        persistent_(options.persistent) {
    kvLayerBytes_ = uint64_t(m.kvCache().seqLen) * m.kvCache().kvDim * byteSize(m.kvCache().dtype);
    // After the planned arena: state that kernels keep between launches
    // (zeroed once by the runtime), then scratch that one kernel hands the
    // next (reused by every op).
    stateOffset_ = (uint64_t(std::max<int64_t>(m.arenaBytes(), 0)) + 255) / 256 * 256;
    uint64_t counters = 0;
    for (const auto &f : m.functions())
      for (const auto &op : f->ops())
        if (op->kind() == OpKind::Attention)
          counters = std::max<uint64_t>(counters, launch::attentionCounters(op->intAttr(AttrKey::n_heads)));
    // Persistent kernels: a counter and a flag per launch (at most two per op).
    phaseCountersOffset_ = stateOffset_ + counters * 4;
    uint64_t phases = 0;
    if (persistent_)
      for (const auto &f : m.functions()) phases = std::max<uint64_t>(phases, 2 * 2 * f->ops().size());
    scratchOffset_ = stateOffset_ + ((counters + phases) * 4 + 255) / 256 * 256;
  }

  /// `planned`: weights must already point into the plan's weights file.
  llvm::Error emitFunction(const Function &f, bool planned);
  /// The plan function "advance_greedy", for a module with @decode_greedy.
  void emitAdvanceGreedy(const Function &greedy);
  /// The plan functions "greedy_chain_start" and "greedy_chain_step"
  /// (advance.cuh's form 2) where @decode_greedy, as emitted, allows them:
  /// a launch per op, the embedding first and the classifier last. Returns
  /// whether it emitted them.
  bool emitGreedyChain(const Function &greedy);
  uint64_t arenaBytesWithScratch() const { return scratchOffset_ + scratchBytes_; }
  /// Drops the kernels no launch uses any more (those a persistent kernel absorbed).
  void pruneKernels();
  const std::vector<KernelWrapper> &kernels() const { return kernels_; }
  const std::vector<std::vector<std::string>> &kernelOps() const { return kernelOps_; }

private:
  llvm::Error emitOp(const Op &op, const ValueNumbering &names);
  /// Adds a launch of `kernel` with `shape` and `args` to the current function.
  void launch(KernelWrapper kernel, launch::Shape shape, std::vector<Arg> args, const std::string &opText);
  /// Adds a collective over the ranks (tensor parallelism) between arena offsets.
  void collective(Collective::Kind kind, uint64_t send, uint64_t recv, uint64_t bytes);

  Arg arena(const Value *v) const {
    Arg a;
    a.set_kind(Arg::ARENA);
    a.set_offset(v->arenaOffset());
    return a;
  }
  Arg scratch() {
    Arg a;
    a.set_kind(Arg::ARENA);
    a.set_offset(scratchOffset_);
    return a;
  }
  Arg state() {
    Arg a;
    a.set_kind(Arg::ARENA);
    a.set_offset(stateOffset_);
    return a;
  }
  Arg weight(const Value *v) const {
    Arg a;
    a.set_kind(Arg::WEIGHT);
    a.set_offset(llvm::cast<Weight>(v)->fileOffset());
    return a;
  }
  Arg kv(int64_t layer, bool values) const {
    Arg a;
    a.set_kind(Arg::KV_CACHE);
    a.set_offset((values ? m_.kvCache().layers * kvLayerBytes_ : 0) + layer * kvLayerBytes_);
    return a;
  }
  static Arg step(Arg::Kind kind) {
    Arg a;
    a.set_kind(kind);
    return a;
  }
  void needScratch(uint64_t bytes) { scratchBytes_ = std::max(scratchBytes_, (bytes + 255) / 256 * 256); }
  /// Records the launch as a phase of the function's persistent kernel, or
  /// marks the function as unable to have one.
  void addPhase(const KernelWrapper &kernel, const launch::Shape &shape, const std::vector<Arg> &args,
                const std::string &opText);
  /// Replaces the current function's launches with its persistent kernel.
  void makePersistent(const Function &f);

  const Module &m_;
  plan::Plan &plan_;
  plan::Function *function_ = nullptr;
  unsigned gemvSplit_ = 0, attentionParts_ = 0;
  bool persistent_ = false;
  uint64_t kvLayerBytes_ = 0, stateOffset_ = 0, scratchOffset_ = 0, scratchBytes_ = 0, phaseCountersOffset_ = 0;
  // The current function's launches as phases of a persistent kernel, while
  // every launch so far allows one.
  std::vector<PersistentPhase> phases_;
  bool phasesOk_ = false;
  std::vector<KernelWrapper> kernels_;
  std::vector<std::vector<std::string>> kernelOps_; // the IR ops each kernel implements, for --emit=cuda
  llvm::StringMap<unsigned> kernelIndex_;
  /// What emitGreedyChain needs of a function's embedding and classifier,
  /// recorded as emitOp meets them.
  struct ChainParts {
    int embeddingDim = 0, tableRows = 0; // 0: the function does not start with an embedding
    DType tableType = DType::f32;
    bool classifier = false; // it starts with the embedding and ends with matmul_argmax over tableRows rows:
                             // the forms below are set
    int classifierLaunch = -1; // the index of the classifier's first launch
    KernelWrapper classifierKernel, keysKernel; // the chained forms
    launch::Shape classifierShape;
    std::vector<Arg> classifierArgs, keysArgs;
    std::string classifierText, keysText, embeddingText;
  };
  llvm::StringMap<ChainParts> chainParts_;
};

void Emitter::launch(KernelWrapper kernel, launch::Shape shape, std::vector<Arg> args, const std::string &opText) {
  auto [it, inserted] = kernelIndex_.try_emplace(kernel.name, kernels_.size());
  if (inserted) {
    kernels_.push_back(kernel);
    kernelOps_.emplace_back();
  }
  assert(kernels_[it->second].code == kernel.code && "two kernels of one name differ");
  if (kernelOps_[it->second].size() < 3) kernelOps_[it->second].push_back(opText);
  if (phasesOk_) addPhase(kernel, shape, args, opText);
  auto *l = function_->add_launches();
  l->set_kernel(it->second);
  l->set_grid_x(shape.gridX);
  l->set_grid_y(shape.gridY);
  l->set_grid_z(1);
  l->set_block_x(shape.blockX);
  l->set_block_y(1);
  l->set_block_z(1);
  l->set_shared_bytes(shape.dynamicSharedBytes);
  l->set_grid_stride(shape.gridStride);
  for (Arg &a : args) *l->add_args() = std::move(a);
}

void Emitter::addPhase(const KernelWrapper &kernel, const launch::Shape &shape, const std::vector<Arg> &args,
                       const std::string &opText) {
  if (kernel.threads != unsigned(launch::kPersistentThreads) || shape.dynamicSharedBytes != 0) {
    phasesOk_ = false;
    return;
  }
  PersistentPhase phase{nullptr, shape.gridX, shape.gridY, {}, opText};
  for (const Arg &a : args) {
    switch (a.kind()) {
    case Arg::ARENA: phase.args.push_back(llvm::formatv("arena_ + {0}", a.offset())); break;
    case Arg::WEIGHT: phase.args.push_back(llvm::formatv("weights_ + {0}", a.offset())); break;
    case Arg::KV_CACHE: phase.args.push_back(llvm::formatv("kv_ + {0}", a.offset())); break;
    case Arg::TOKEN: phase.args.push_back("token_"); break;
    case Arg::POS: phase.args.push_back("pos_"); break;
    default: phasesOk_ = false; return; // not a pointer the persistent kernel has
    }
  }
  phases_.push_back(std::move(phase));
}

void Emitter::makePersistent(const Function &f) {
  if (!phasesOk_ || phases_.empty()) return;
  // While phasesOk_, phase p is launch p.
  for (size_t p = 0; p < phases_.size(); ++p) phases_[p].kernel = &kernels_[function_->launches(int(p)).kernel()];
  KernelWrapper kernel = persistentKernel("persistent_" + f.name(), phases_, phaseCountersOffset_);
  std::string summary = llvm::formatv("@{0}: its {1} launches as phases of one kernel", f.name(), phases_.size());
  function_->clear_launches();
  phasesOk_ = false;
  Arg base;
  base.set_kind(Arg::ARENA);
  Arg weights;
  weights.set_kind(Arg::WEIGHT);
  Arg kvBase;
  kvBase.set_kind(Arg::KV_CACHE);
  launch(std::move(kernel), {0, 1, unsigned(launch::kPersistentThreads), 0},
         {base, weights, kvBase, step(Arg::TOKEN), step(Arg::POS)}, summary);
  function_->mutable_launches(0)->set_persistent(true);
}

void Emitter::pruneKernels() {
  std::vector<int> newIndex(kernels_.size(), -1);
  std::vector<KernelWrapper> kernels;
  std::vector<std::vector<std::string>> ops;
  for (auto &f : *plan_.mutable_functions())
    for (auto &l : *f.mutable_launches()) {
      if (l.has_collective() && l.collective().kind() != Collective::NONE) continue;
      int &index = newIndex[l.kernel()];
      if (index < 0) {
        index = int(kernels.size());
        kernels.push_back(kernels_[l.kernel()]);
        ops.push_back(kernelOps_[l.kernel()]);
      }
      l.set_kernel(unsigned(index));
    }
  kernels_ = std::move(kernels);
  kernelOps_ = std::move(ops);
  kernelIndex_.clear();
}

void Emitter::collective(Collective::Kind kind, uint64_t send, uint64_t recv, uint64_t bytes) {
  phasesOk_ = false;
  Collective *c = function_->add_launches()->mutable_collective();
  c->set_kind(kind);
  c->set_send_offset(send);
  c->set_recv_offset(recv);
  c->set_bytes(bytes);
}

llvm::Error Emitter::emitOp(const Op &op, const ValueNumbering &names) {
  std::string text = "@" + op.parent()->name() + ": " + toString(op, names);
  auto x = [&](unsigned i) { return op.operand(i); };
  auto dim = [&](unsigned i, unsigned d = 0) { return int(x(i)->type().shape[d]); };
  auto wtype = [&](unsigned i) { return x(i)->type().dtype; };
  const DType kvType = m_.kvCache().dtype;
  // The matmul family: warps per task of `rowsPerTask` rows, `rows` rows of
  // operand 1's row length in all (gemv.cuh).
  auto split = [&](int rows, int rowsPerTask) {
    return int(gemvSplit_ ? gemvSplit_ : launch::gemvSplit(rows, dim(1, 1), byteSize(wtype(1)), rowsPerTask));
  };
  bool rms = op.hasAttr(AttrKey::rms_eps);
  float eps = rms ? float(op.floatAttr(AttrKey::rms_eps)) : 1e-5f;
  ChainParts &chain = chainParts_[op.parent()->name()];
  // The classifier (matmul_argmax, matmul_argmax_shard): its kernel and
  // launch shape, also for the chained step's form; matmulArgmaxKeys launches
  // its first stage, each block's best row as a packed key in scratch, and
  // returns how many keys.
  auto classifierKernel = [&](bool advancesPosition) {
    return matmulArgmaxKernel(dim(1, 0), dim(1, 1), wtype(1), rms, eps, split(dim(1, 0), 1), advancesPosition);
  };
  auto classifierShape = [&] {
    return launch::matmulArgmax(dim(1, 0), dim(1, 1), byteSize(wtype(1)), split(dim(1, 0), 1));
  };
  auto matmulArgmaxKeys = [&] {
    launch::Shape shape = classifierShape();
    needScratch(uint64_t(shape.gridX) * 8);
    launch(classifierKernel(false), shape, {arena(x(0)), weight(x(1)), scratch()}, text);
    return shape.gridX;
  };
  const Value *y = op.result();
  Arg pos = step(Arg::POS);
  switch (op.kind()) {
  case OpKind::Embedding:
    launch(embeddingKernel(dim(0, 1), wtype(0)), launch::embedding(dim(0, 1)),
           {weight(x(0)), step(Arg::TOKEN), arena(y)}, text);
    // The chained step's last kernel writes this row for the next step.
    if (function_->launches_size() == 1) {
      chain.embeddingDim = dim(0, 1);
      chain.tableRows = dim(0, 0);
      chain.tableType = wtype(0);
      chain.keysArgs = {scratch(), step(Arg::POS), step(Arg::HISTORY), step(Arg::TOKEN), weight(x(0)), arena(y)};
      chain.embeddingText = toString(op, names);
    }
    break;
  case OpKind::RmsNorm:
    launch(rmsnormKernel(dim(0), wtype(1), float(op.floatAttr(AttrKey::eps))), launch::rmsnorm(),
           {arena(x(0)), weight(x(1)), arena(y)}, text);
    break;
  case OpKind::RmsNormalize:
    launch(rmsNormalizeKernel(dim(0), float(op.floatAttr(AttrKey::eps))), launch::rmsNormalize(),
           {arena(x(0)), arena(y)}, text);
    break;
  case OpKind::MatMul: {
    int n = dim(1, 0), s = split(n, 1);
    launch(matmulKernel(n, dim(1, 1), wtype(1), rms, eps, s), launch::matmul(n, s),
           {arena(x(0)), weight(x(1)), arena(y)}, text);
    break;
  }
  case OpKind::MatMulAdd: {
    int n = dim(1, 0), s = split(n, 1);
    launch(matmulAddKernel(n, dim(1, 1), wtype(1), rms, eps, s), launch::matmulAdd(n, s),
           {arena(x(0)), weight(x(1)), arena(x(2)), arena(y)}, text);
    break;
  }
  case OpKind::MatMulSwiglu: {
    int n = dim(1, 0), s = split(2 * n, 2);
    launch(matmulSwigluKernel(n, dim(1, 1), wtype(1), rms, eps, s), launch::matmulSwiglu(n, s),
           {arena(x(0)), weight(x(1)), weight(x(2)), arena(y)}, text);
    break;
  }
  case OpKind::MatMulQkv: {
    int n = dim(1, 0) + dim(2, 0) + dim(3, 0), s = split(n, 1);
    launch(matmulQkvKernel(dim(1, 0), dim(2, 0), dim(3, 0), dim(1, 1), wtype(1), rms, eps, s), launch::matmulQkv(n, s),
           {arena(x(0)), weight(x(1)), weight(x(2)), weight(x(3)), arena(y)}, text);
    break;
  }
  case OpKind::MatMulQkvRopeKv: {
    int64_t layer = op.intAttr(AttrKey::layer);
    int s = split(dim(1, 0) + 2 * dim(2, 0), 2);
    launch(matmulQkvRopeKvKernel(dim(1, 0), dim(2, 0), dim(1, 1), int(op.intAttr(AttrKey::head_size)), wtype(1), rms,
                                 eps, float(op.floatAttr(AttrKey::theta)), s, kvType),
           launch::matmulQkvRopeKv(dim(1, 0), dim(2, 0), s),
           {arena(x(0)), weight(x(1)), weight(x(2)), weight(x(3)), pos, kv(layer, false), kv(layer, true), arena(y)},
           text);
    break;
  }
  case OpKind::MatMulArgMax: {
    chain.classifierLaunch = function_->launches_size();
    unsigned partials = matmulArgmaxKeys();
    int threads = persistent_ ? launch::kPersistentThreads : launch::kArgmaxThreads;
    launch(argmaxKeysKernel(int(partials), threads), launch::argmaxKeys(threads), {scratch(), arena(y)}, text);
    // The chained step's forms (emitGreedyChain), where the function starts
    // with an embedding of a table of as many rows as the classifier has.
    chain.classifier = op.parent()->ops().back().get() == &op && chain.embeddingDim > 0 &&
                       chain.tableRows == dim(1, 0);
    if (chain.classifier) {
      chain.classifierKernel = classifierKernel(/*advancesPosition=*/true);
      chain.classifierShape = classifierShape();
      chain.classifierArgs = {arena(x(0)), weight(x(1)), scratch(), step(Arg::POS)};
      chain.classifierText = text + " (advancing pos: greedy_chain_step)";
      chain.keysKernel = argmaxKeysChainedKernel(int(partials), chain.embeddingDim, chain.tableType);
      chain.keysText = text + " (its second stage), then the next step's " + chain.embeddingText;
    }
    break;
  }
  case OpKind::Rope:
    launch(ropeKernel(dim(0), int(op.intAttr(AttrKey::head_size)), float(op.floatAttr(AttrKey::theta))),
           launch::rope(dim(0)), {arena(x(0)), pos, arena(y)}, text);
    break;
  case OpKind::KvWrite: {
    int64_t layer = op.intAttr(AttrKey::layer);
    launch(kvWriteKernel(dim(0), kvType), launch::kvWrite(dim(0)),
           {arena(x(0)), arena(x(1)), pos, kv(layer, false), kv(layer, true)}, text);
    break;
  }
  case OpKind::Attention: {
    // attention.cuh reads the cache rows of earlier steps before its wait,
    // which only a step whose first kernel waits before it lets the next one
    // launch (Wait::FirstOfStep: the embedding) makes safe; greedy_chain_step
    // copies these launches after the classifier's advance_position, which
    // does the same (emitGreedyChain).
    if (function_->launches_size() == 0 ||
        kernels_[function_->launches(0).kernel()].waits != Wait::FirstOfStep)
      return error(text + ": attention in a function whose first kernel lets the next launch before it waits");
    int64_t layer = op.intAttr(AttrKey::layer);
    int h = int(op.intAttr(AttrKey::n_heads)), kvh = int(op.intAttr(AttrKey::n_kv_heads)),
        hs = int(op.intAttr(AttrKey::head_size)), s = int(m_.kvCache().seqLen);
    if (s < kSplitAttentionFrom && s <= launch::kAttentionMaxSeqLen) {
      launch(attentionKernel(h, kvh, hs, s, kvType), launch::attention(h),
             {arena(x(0)), pos, kv(layer, false), kv(layer, true), arena(y)}, text);
    } else {
      int parts = int(attentionParts_ ? attentionParts_ : launch::attentionParts(unsigned(h)));
      needScratch(uint64_t(launch::attentionPartialFloats(h, hs, s, parts)) * 4);
      launch(attentionSplitKernel(h, kvh, hs, s, kvType, parts), launch::attentionSplit(h, s, parts),
             {arena(x(0)), pos, kv(layer, false), kv(layer, true), scratch(), state(), arena(y)}, text);
    }
    break;
  }
  case OpKind::SiluMul:
    launch(siluMulKernel(dim(0)), launch::siluMul(dim(0)), {arena(x(0)), arena(x(1)), arena(y)}, text);
    break;
  case OpKind::Add:
    launch(addKernel(dim(0)), launch::add(dim(0)), {arena(x(0)), arena(x(1)), arena(y)}, text);
    break;
  case OpKind::Slice:
    launch(sliceKernel(int(op.intAttr(AttrKey::offset)), int(op.intAttr(AttrKey::size))),
           launch::slice(int(op.intAttr(AttrKey::size))), {arena(x(0)), arena(y)}, text);
    break;
  case OpKind::ArgMax:
    launch(argmaxKernel(dim(0)), launch::argmax(), {arena(x(0)), arena(y)}, text);
    break;
  // Tensor parallelism (passes/PartitionTensorParallel.h): collectives are
  // NCCL calls on the step's stream, made by the runtime, not kernels.
  case OpKind::AllReduce:
    collective(Collective::ALL_REDUCE_SUM, x(0)->arenaOffset(), y->arenaOffset(), y->type().byteSize());
    break;
  case OpKind::AllGather:
    collective(Collective::ALL_GATHER, x(0)->arenaOffset(), y->arenaOffset(), x(0)->type().byteSize());
    break;
  case OpKind::MatMulArgMaxShard: {
    unsigned partials = matmulArgmaxKeys();
    launch(argmaxShardKeyKernel(int(partials), dim(1, 0)), launch::argmaxShardKey(),
           {scratch(), step(Arg::RANK), arena(y)}, text);
    break;
  }
  case OpKind::ArgMaxReduce: {
    int ranks = int(op.intAttr(AttrKey::ranks));
    needScratch(uint64_t(ranks) * 8);
    collective(Collective::ALL_GATHER, x(0)->arenaOffset(), scratchOffset_, 8);
    launch(argmaxKeysKernel(ranks, launch::kArgmaxThreads), launch::argmaxKeys(launch::kArgmaxThreads),
           {scratch(), arena(y)}, text);
    break;
  }
  }
  return llvm::Error::success();
}

/// A plan function with no output of its own (advance.cuh's).
static void setNoOutput(plan::Function &f) {
  auto *output = f.mutable_output();
  output->set_offset(0);
  output->set_bytes(0);
  output->set_dtype("none");
}

void Emitter::emitAdvanceGreedy(const Function &greedy) {
  function_ = plan_.add_functions();
  function_->set_name("advance_greedy");
  launch(advanceGreedyKernel(), launch::advance(),
         {arena(greedy.results()[0]), step(Arg::TOKEN), step(Arg::POS), step(Arg::HISTORY)},
         "(chains @" + greedy.name() + " steps on the device)");
  setNoOutput(*function_);
}

bool Emitter::emitGreedyChain(const Function &greedy) {
  auto parts = chainParts_.find(greedy.name());
  if (parts == chainParts_.end() || !parts->second.classifier) return false;
  const ChainParts &chain = parts->second;
  auto emitted = llvm::find_if(plan_.functions(), [&](const plan::Function &f) { return f.name() == greedy.name(); });
  if (emitted == plan_.functions().end()) return false;
  const plan::Function step = *emitted; // a copy: adding functions below
  const int n = step.launches_size();
  // The launches as emitted, the embedding's first (it waits before it lets
  // the next kernel launch) and the classifier's two last: not where a
  // persistent kernel replaced them.
  if (chain.classifierLaunch != n - 2) return false;
  phasesOk_ = false;
  function_ = plan_.add_functions();
  function_->set_name("greedy_chain_start");
  *function_->add_launches() = step.launches(0);
  setNoOutput(*function_);

  function_ = plan_.add_functions();
  function_->set_name("greedy_chain_step");
  for (int i = 1; i < n - 2; ++i) *function_->add_launches() = step.launches(i);
  launch(chain.classifierKernel, chain.classifierShape, chain.classifierArgs, chain.classifierText);
  launch(chain.keysKernel, launch::argmaxKeys(launch::kArgmaxThreads), chain.keysArgs, chain.keysText);
  setNoOutput(*function_);
  return true;
}

llvm::Error Emitter::emitFunction(const Function &f, bool planned) {
  function_ = plan_.add_functions();
  function_->set_name(f.name());
  phases_.clear();
  phasesOk_ = persistent_;
  ValueNumbering names(f);
  for (const auto &op : f.ops()) {
    for (const Value *v : op->operands()) {
      if (planned && v->isWeight() && llvm::cast<Weight>(v)->expr() != WeightExpr::File)
        return error("@" + f.name() + ": weight @" + v->name() + " is not in the weights file yet (a codegen bug)");
      if (v->definingOp() && v->arenaOffset() < 0)
        return error("@" + f.name() + ": " + names.name(v) + " has no arena offset: plan memory first");
    }
    if (auto e = emitOp(*op, names)) return e;
  }
  makePersistent(f);
  const Value *out = f.results()[0];
  auto *output = function_->mutable_output();
  output->set_offset(out->arenaOffset());
  output->set_bytes(out->type().byteSize());
  output->set_dtype(toString(out->type().dtype).str());
  return llvm::Error::success();
}

/// Compiles every kernel for every architecture, and the PTX for the
/// lowest, on a pool of threads.
llvm::Error compileAll(const std::vector<KernelWrapper> &kernels, const CudaOptions &options, plan::Plan &plan) {
  struct Job {
    size_t kernel;
    std::string arch;
  };
  std::vector<Job> jobs;
  for (size_t k = 0; k < kernels.size(); ++k) {
    for (const std::string &arch : options.archs) jobs.push_back({k, arch});
    jobs.push_back({k, "compute_" + llvm::StringRef(options.archs.front()).drop_front(3).str()});
  }
  std::vector<std::string> sources;
  for (const KernelWrapper &k : kernels) sources.push_back(selfContainedSource({k}));
  std::vector<runtime::cuda::CompiledKernel> results(jobs.size());
  std::mutex mutex;
  std::string firstError;
  llvm::ThreadPool pool(llvm::hardware_concurrency(options.threads));
  for (size_t j = 0; j < jobs.size(); ++j)
    pool.async([&, j] {
      const Job &job = jobs[j];
      auto compiled = runtime::cuda::compileCuda(sources[job.kernel], kernels[job.kernel].name, job.arch);
      std::lock_guard<std::mutex> lock(mutex);
      if (!compiled) {
        if (firstError.empty()) firstError = llvm::toString(compiled.takeError());
        else llvm::consumeError(compiled.takeError());
        return;
      }
      if (!llvm::StringRef(compiled->log).trim().empty() && firstError.empty())
        firstError = "NVRTC warned compiling " + kernels[job.kernel].name + " for " + job.arch + ":\n" + compiled->log;
      results[j] = std::move(*compiled);
    });
  pool.wait();
  if (!firstError.empty()) return error(firstError);
  for (size_t j = 0; j < jobs.size(); ++j) {
    plan::Kernel &k = *plan.mutable_kernels(jobs[j].kernel);
    if (results[j].isPtx) {
      k.set_ptx(results[j].image);
      k.set_ptx_arch(jobs[j].arch);
    } else {
      auto *b = k.add_binaries();
      b->set_arch(jobs[j].arch);
      b->set_cubin(results[j].image);
    }
  }
  return llvm::Error::success();
}

} // namespace

llvm::Error emitCuda(const Module &m, const CudaOptions &options, plan::Plan &plan) {
  if (m.arenaBytes() < 0) return error("the module has no memory plan (run plan-memory first)");
  if (!isFloat(m.kvCache().dtype))
    return error("the KV cache dtype must be f32, f16 or bf16, not " + toString(m.kvCache().dtype));
  for (const std::string &arch : options.archs)
    if (!llvm::StringRef(arch).startswith("sm_") || arch.size() < 5)
      return error("--arch takes names like sm_80 or sm_90, got '" + arch + "'");
  // The tuning overrides: 0 (the default, from the shapes) or 1, 2, 4, 8.
  auto isOverride = [](unsigned v) { return v == 0 || v == 1 || v == 2 || v == 4 || v == 8; };
  if (!isOverride(options.gemvSplit))
    return error(llvm::formatv("the warps per matmul row must be 1, 2, 4 or 8, got {0}", options.gemvSplit));
  if (!isOverride(options.attentionParts))
    return error(
        llvm::formatv("the attention parts (blocks per span) must be 1, 2, 4 or 8, got {0}", options.attentionParts));
  Emitter emitter(m, plan, options);
  for (const auto &f : m.functions())
    if (auto e = emitter.emitFunction(*f, options.requireWeightsFile)) return e;
  if (const Function *greedy = m.function("decode_greedy"))
    if (greedy->results().size() == 1 && greedy->results()[0]->type().dtype == DType::i32)
      if (!emitter.emitGreedyChain(*greedy)) emitter.emitAdvanceGreedy(*greedy);
  emitter.pruneKernels();
  for (size_t i = 0; i < emitter.kernels().size(); ++i) {
    const KernelWrapper &w = emitter.kernels()[i];
    auto *k = plan.add_kernels();
    k->set_name(w.name);
    std::string ops;
    for (const std::string &op : emitter.kernelOps()[i]) ops += op + "\n";
    k->set_op(ops);
    k->set_source(selfContainedSource({w}));
  }
  plan.mutable_memory()->set_arena_bytes(emitter.arenaBytesWithScratch());
  if (!options.compile) return llvm::Error::success();
  return compileAll(emitter.kernels(), options, plan);
}

void printCuda(const Module &m, const plan::Plan &plan, llvm::raw_ostream &os) {
  os << "// CUDA generated by llamac for @" << m.name() << ": " << plan.kernels_size()
     << " kernels. Each kernel's source in the plan inlines the templates of codegen/kernels/ it includes.\n";
  for (const auto &k : plan.kernels()) {
    os << "\n// ---- kernel " << k.name() << "\n";
    llvm::StringRef ops = k.op();
    while (!ops.empty()) {
      auto [line, rest] = ops.split('\n');
      if (!line.empty()) os << "// implements " << line << "\n";
      ops = rest;
    }
    llvm::StringRef source = k.source();
    size_t at = source.find("// ----- kernels");
    os << (at == llvm::StringRef::npos ? source : source.drop_front(at + 17)).trim() << "\n";
  }
  for (const auto &f : plan.functions()) {
    os << "\n// ---- @" << f.name() << ": " << f.launches_size() << " launches\n";
    for (const auto &l : f.launches())
      if (l.has_collective() && l.collective().kind() != Collective::NONE)
        os << llvm::formatv("//   nccl {0} ({1} bytes per rank)\n", Collective::Kind_Name(l.collective().kind()),
                            l.collective().bytes());
      else if (l.persistent())
        os << llvm::formatv("//   {0} <<<(every SM), {1}>>>\n", plan.kernels(l.kernel()).name(), l.block_x());
      else
        os << llvm::formatv("//   {0} <<<({1},{2}), {3}>>>\n", plan.kernels(l.kernel()).name(), l.grid_x(), l.grid_y(),
                          l.block_x());
  }
}

} // namespace llamac::codegen
