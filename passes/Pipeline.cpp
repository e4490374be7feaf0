#include "passes/Pipeline.h"

#include "passes/Canonicalize.h"
#include "passes/ConvertWeights.h"
#include "passes/FoldRmsNormGain.h"
#include "passes/FuseClassifierArgmax.h"
#include "passes/FuseResidualAdd.h"
#include "passes/FuseRmsNormPrologue.h"
#include "passes/FuseRopeKvWrite.h"
#include "passes/FuseSwiGlu.h"
#include "passes/MergeQkv.h"
#include "passes/PartitionTensorParallel.h"
#include "passes/PlanMemory.h"

namespace llamac::passes {

void addDefaultPipeline(PassManager &pm, const PipelineOptions &options) {
  if (options.optLevel >= 1) {
    pm.add(createCanonicalizePass());
    pm.add(createFoldRmsNormGainPass());
  }
  if (options.optLevel >= 2) {
    pm.add(createMergeQkvPass());
    pm.add(createFuseRopeKvWritePass());
    pm.add(createFuseSwiGluPass());
    pm.add(createFuseResidualAddPass());
    pm.add(createFuseRmsNormProloguePass());
    pm.add(createFuseClassifierArgmaxPass());
  }
  if (options.tensorParallel > 0) pm.add(createPartitionTensorParallelPass(options.tensorParallel));
  if (options.weightDType != ir::DType::f32) pm.add(createConvertWeightsPass(options.weightDType));
  pm.add(createCanonicalizePass());
  pm.add(createPlanMemoryPass(/*reuse=*/options.optLevel >= 1));
}

namespace {

struct NamedPass {
  const char *name;
  std::unique_ptr<Pass> (*create)();
};

const NamedPass kPasses[] = {
    {"canonicalize", createCanonicalizePass},
    {"fold-rmsnorm-gain", createFoldRmsNormGainPass},
    {"merge-qkv", createMergeQkvPass},
    {"fuse-rope-kv-write", createFuseRopeKvWritePass},
    {"fuse-swiglu", createFuseSwiGluPass},
    {"fuse-residual-add", createFuseResidualAddPass},
    {"fuse-rmsnorm-prologue", createFuseRmsNormProloguePass},
    {"fuse-classifier-argmax", createFuseClassifierArgmaxPass},
    {"plan-memory", [] { return createPlanMemoryPass(true); }},
    {"plan-memory-no-reuse", [] { return createPlanMemoryPass(false); }},
};

} // namespace

llvm::Expected<std::unique_ptr<Pass>> createPassByName(llvm::StringRef name) {
  auto [base, parameter] = name.split(':');
  if (base == "convert-weights") {
    std::optional<ir::DType> dtype = ir::parseDType(parameter);
    if (!dtype || !ir::isFloat(*dtype))
      return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                     "convert-weights takes a float dtype: convert-weights:f16, :bf16 or :f32");
    return createConvertWeightsPass(*dtype);
  }
  if (base == "partition-tp") {
    unsigned ranks = 0;
    if (parameter.getAsInteger(10, ranks) || ranks < 1)
      return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                     "partition-tp takes a number of ranks: partition-tp:2, partition-tp:4, ...");
    return createPartitionTensorParallelPass(ranks);
  }
  for (const NamedPass &p : kPasses)
    if (name == p.name) return p.create();
  std::string known;
  for (const std::string &n : passNames()) known += (known.empty() ? "" : ", ") + n;
  return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                 "unknown pass '" + name.str() + "' (known: " + known + ")");
}

std::vector<std::string> passNames() {
  std::vector<std::string> names;
  for (const NamedPass &p : kPasses) names.push_back(p.name);
  names.push_back("convert-weights:<dtype>");
  names.push_back("partition-tp:<ranks>");
  return names;
}

} // namespace llamac::passes
