//===- runtime/Engine.h - Running a loaded plan on one device ---*- C++ -*-===//
//
// An Engine owns everything one device needs to run a plan's decode step:
// weights, the arena and the KV cache, all set up once. The generation loop
// (runtime/Generate.h) only calls step functions.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "ir/IR.h"
#include "runtime/plan/PlanFile.h"

#include "llvm/ADT/ArrayRef.h"
#include "llvm/Support/Error.h"

#include <memory>
#include <string>
#include <vector>

namespace llamac::runtime {

class Engine {
public:
  virtual ~Engine() = default;
  /// "cpu (16 threads)", "cuda: NVIDIA H100 80GB HBM3 (sm_90)".
  virtual std::string deviceName() const = 0;
  /// @decode_greedy: feeds `token` at `pos` and returns the argmax token.
  virtual llvm::Expected<int> stepGreedy(int token, int pos) = 0;
  /// @decode: feeds `token` at `pos` and returns the logits (host memory,
  /// valid until the next step; the sampler may modify them).
  virtual llvm::Expected<llvm::MutableArrayRef<float>> stepLogits(int token, int pos) = 0;
  /// Chained greedy steps: feeds `token` at `pos`, then each step's output at
  /// the next position, `count` steps in all, and returns their outputs
  /// (engine memory, valid until the next step). The default loops
  /// stepGreedy; the CUDA engine runs greedyChainLength() steps from one
  /// graph, with no host round trip between them.
  ///
  /// `then`: how many steps the caller asks for next, continuing from this
  /// call's last output at pos + count (0: none, or not known). When that is
  /// a whole chain, the CUDA engine starts it before it waits for this one,
  /// so the device does not idle while the host reads these tokens; the next
  /// call that continues so finds it running. Any other call discards it.
  virtual llvm::Expected<llvm::ArrayRef<int>> stepsGreedy(int token, int pos, int count, int then = 0);
  /// The count stepsGreedy runs fastest (1: it only loops stepGreedy).
  virtual int greedyChainLength() const { return 1; }
  virtual uint64_t arenaBytes() const = 0;
  virtual uint64_t kvCacheBytes() const = 0;

  /// Runs `steps` greedy steps from `token` at positions firstPos, firstPos+1,
  /// ..., feeding each output back as the decode loop does (chains of
  /// greedyChainLength()), and returns the milliseconds they took. The
  /// default times runGreedySteps with a steady clock; the CUDA engine with
  /// CUDA events.
  virtual llvm::Expected<double> timeGreedySteps(int token, int firstPos, int steps);
  /// Device memory bandwidth in bytes per second, from a large device copy
  /// (bytes read plus bytes written), measured the same way.
  virtual llvm::Expected<double> copyBandwidth() = 0;

protected:
  /// The steps timeGreedySteps times: stepsGreedy chain after chain, each
  /// call announcing the next, as the decode loop does.
  llvm::Error runGreedySteps(int token, int firstPos, int steps);

  std::vector<int> stepsOutput_; // stepsGreedy's default: grows once, then reused
};

/// The plan's IR, parsed and checked against its weights sidecar.
struct PlanProgram {
  std::unique_ptr<ir::Module> module;
  const ir::Function *decode = nullptr;
  const ir::Function *decodeGreedy = nullptr;
};
llvm::Expected<PlanProgram> loadProgram(const LoadedPlan &plan, llvm::StringRef planName);

/// The weight bytes one decode step must read: every weight an op reads in
/// full, once, plus one row of an embedding table. The floor of a step is
/// this over the memory bandwidth (a tied classifier counts once, as the
/// classifier; the embedding reads only the token's row).
uint64_t stepWeightBytes(const ir::Function &f);

/// The CPU executor behind the Engine interface. `threads` 0: one per core.
llvm::Expected<std::unique_ptr<Engine>> createCpuEngine(const LoadedPlan &plan, const PlanProgram &program,
                                                        unsigned threads);

} // namespace llamac::runtime
