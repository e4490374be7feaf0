// plan-memory: every plan it makes is checked against an independent
// liveness computation (no two values live at once share a byte, except the
// in-place pairs the pass documents), re-planning is idempotent, and the CPU
// executor computes bit-identical logits with and without the plan.

#include "passes/PlanMemory.h"
#include "passes/Pipeline.h"
#include "tests/passes/PassTestHarness.h"

#include "llvm/Support/MathExtras.h"

#include <gtest/gtest-spi.h>

#include <iostream>

using namespace llamac;
using namespace llamac::ir;

namespace {

std::unique_ptr<passes::Pass> planWithReuse() { return passes::createPlanMemoryPass(true); }
std::unique_ptr<passes::Pass> planWithoutReuse() { return passes::createPlanMemoryPass(false); }

uint64_t slot(const Value *v) { return llvm::alignTo(v->type().byteSize(), passes::kArenaAlignment); }

/// [first op, last op] over which a result must keep its bytes.
struct Interval {
  const Value *value;
  size_t def, lastUse;
};

std::vector<Interval> liveIntervals(const Function &f) {
  std::vector<Interval> intervals;
  const auto &ops = f.ops();
  for (size_t i = 0; i < ops.size(); ++i) {
    const Value *r = ops[i]->result();
    if (!r) continue;
    size_t last = i;
    for (size_t j = i + 1; j < ops.size(); ++j)
      if (llvm::is_contained(ops[j]->operands(), r)) last = j;
    if (f.isReturned(r)) last = ops.size();
    intervals.push_back({r, i, last});
  }
  return intervals;
}

/// Whether `later` may legally be written over `earlier`, which dies at the
/// op computing `later`.
bool isAllowedInPlace(const Interval &earlier, const Interval &later) {
  if (earlier.lastUse != later.def) return false;
  const Op &op = *later.value->definingOp();
  if (op.kind() == OpKind::MatMulAdd) return op.operand(2) == earlier.value && op.operand(0) != earlier.value;
  if (op.kind() == OpKind::Add) return llvm::is_contained(op.operands(), earlier.value);
  return false;
}

/// Checks alignment, bounds and that values live at the same time do not
/// share bytes; returns how many in-place pairs the plan uses.
unsigned expectValidPlan(const Module &m) {
  unsigned inPlace = 0;
  EXPECT_GE(m.arenaBytes(), 0) << "the module is not planned";
  EXPECT_EQ(uint64_t(m.arenaBytes()) % passes::kArenaAlignment, 0u);
  for (const auto &f : m.functions()) {
    ValueNumbering names(*f);
    std::vector<Interval> intervals = liveIntervals(*f);
    for (const Interval &a : intervals) {
      int64_t offset = a.value->arenaOffset();
      EXPECT_EQ(offset % int64_t(passes::kArenaAlignment), 0) << "@" << f->name() << " " << names.name(a.value);
      EXPECT_LE(offset + slot(a.value), uint64_t(m.arenaBytes())) << "@" << f->name() << " " << names.name(a.value);
    }
    for (size_t i = 0; i < intervals.size(); ++i)
      for (size_t j = i + 1; j < intervals.size(); ++j) {
        const Interval &a = intervals[i], &b = intervals[j];
        bool liveTogether = a.def <= b.lastUse && b.def <= a.lastUse;
        uint64_t aBegin = a.value->arenaOffset(), bBegin = b.value->arenaOffset();
        bool shareBytes = aBegin < bBegin + slot(b.value) && bBegin < aBegin + slot(a.value);
        if (!liveTogether || !shareBytes) continue;
        if (isAllowedInPlace(a, b) && aBegin == bBegin) {
          ++inPlace;
          continue;
        }
        ADD_FAILURE() << "@" << f->name() << ": " << names.name(a.value) << " (ops " << a.def << ".." << a.lastUse
                      << ", bytes " << aBegin << "+" << slot(a.value) << ") and " << names.name(b.value) << " (ops "
                      << b.def << ".." << b.lastUse << ", bytes " << bBegin << "+" << slot(b.value)
                      << ") are live together and overlap";
      }
  }
  return inPlace;
}

/// The most bytes live at once in any function: a lower bound for any plan
/// (a result written in place shares its operand's bytes).
uint64_t peakLiveBytes(const Module &m) {
  uint64_t peak = 0;
  for (const auto &f : m.functions()) {
    std::vector<Interval> intervals = liveIntervals(*f);
    for (size_t t = 0; t < f->size(); ++t) {
      uint64_t live = 0;
      for (const Interval &v : intervals)
        if (v.def <= t && t <= v.lastUse) live += slot(v.value);
      for (const Interval &result : intervals) {
        if (result.def != t) continue;
        auto over = llvm::find_if(intervals, [&](const Interval &v) { return isAllowedInPlace(v, result); });
        if (over != intervals.end()) live -= slot(over->value);
      }
      peak = std::max(peak, live);
    }
  }
  return peak;
}

void clearPlan(Module &m) {
  for (const auto &f : m.functions())
    for (const auto &op : f->ops())
      if (Value *r = op->result()) r->setArenaOffset(-1);
  m.setArenaBytes(-1);
}

/// The -O2 pipeline without its final plan-memory.
void optimizeUnplanned(Module &m) {
  passes::PassManager pm;
  passes::addDefaultPipeline(pm, passes::PipelineOptions{});
  if (llvm::Error e = pm.run(m)) ADD_FAILURE() << llvm::toString(std::move(e));
  clearPlan(m);
}

TEST(PlanMemory, RawStories260KImport) {
  auto model = test::LoadedModel::load(test::modelPath("stories260K.bin"));
  ASSERT_TRUE(model.module);
  Module &m = *model.module;
  EXPECT_EQ(passes::memoryPlanStats(m).arenaBytes, 0u);
  EXPECT_TRUE(test::runPass(m, planWithReuse));
  expectValidPlan(m);
  passes::MemoryPlanStats stats = passes::memoryPlanStats(m);
  std::cout << "stories260K raw import: memory reduced from " << stats.unplannedBytes << " to " << stats.arenaBytes
            << " bytes (peak live " << peakLiveBytes(m) << ")\n";
  // 112 results per function, 5 layers of 22 plus embedding and classifier;
  // 64-float vectors take one 256-byte slot, 172-float ones three, the
  // 512 logits eight.
  EXPECT_EQ(stats.unplannedBytes, 29696u);
  EXPECT_EQ(stats.largestValueBytes, 2048u);
  EXPECT_EQ(stats.arenaBytes, uint64_t(m.arenaBytes()));
  // The peak is at silu_mul: the residual (256), w1 and w3 outputs and the
  // product (3 x 768). Best fit leaves one 256-byte hole below w1's output.
  EXPECT_EQ(peakLiveBytes(m), 2560u);
  EXPECT_EQ(stats.arenaBytes, 2816u);
}

/// Every in-place case, legal or not (the same module as
/// tests/lit/passes/plan-memory.ir). Every weight reads the file from 0.
constexpr const char *kInPlaceCases = R"(module @t {
  kv_cache layers = 1, seq_len = 4, kv_dim = 8, dtype = f32
  weight @emb : tensor<10x16xf32> = file 0
  weight @g : tensor<16xf32> = file 0
  weight @w : tensor<16x16xf32> = file 0
  weight @wup : tensor<80x16xf32> = file 0
  weight @wdown : tensor<16x80xf32> = file 0
  func @decode(%token : tensor<i32>, %pos : tensor<i32>) -> tensor<16xf32> {
    %0 = embedding @emb, %token : tensor<16xf32>
    %1 = rmsnorm %0, @g {eps = 1e-05} : tensor<16xf32>
    %2 = matmul %1, @wup : tensor<80xf32>
    %3 = matmul_add %2, @wdown, %0 : tensor<16xf32>
    %4 = matmul_add %3, @w, %0 : tensor<16xf32>
    %5 = matmul %4, @w : tensor<16xf32>
    %6 = add %4, %5 : tensor<16xf32>
    %7 = matmul_add %6, @w, %6 : tensor<16xf32>
    %8 = add %7, %4 : tensor<16xf32>
    return %8
  }
  func @decode_greedy(%token : tensor<i32>, %pos : tensor<i32>) -> tensor<i32> {
    %0 = embedding @emb, %token : tensor<16xf32>
    %1 = matmul_argmax %0, @wup : tensor<i32>
    return %1
  }
}
)";

TEST(PlanMemory, InPlaceOnlyWhereLegal) {
  std::unique_ptr<Module> m = test::parseOrFail(kInPlaceCases);
  ASSERT_TRUE(m);
  // 1280 floats in [-1, 1) cover the largest weight.
  std::vector<float> file(1280);
  for (size_t i = 0; i < file.size(); ++i) file[i] = float((i * 7919) % 256) / 128.0f - 1.0f;
  llvm::StringRef bytes(reinterpret_cast<const char *>(file.data()), file.size() * sizeof(float));
  std::vector<int> tokens = {1, 5, 9, 2};
  auto unplanned = test::decodeLogits(*m, bytes, tokens);

  EXPECT_TRUE(test::runPass(*m, planWithReuse));
  EXPECT_EQ(expectValidPlan(*m), 3u);
  const Function &f = *m->function("decode");
  auto offset = [&](unsigned i) { return f.ops()[i]->result()->arenaOffset(); };
  EXPECT_NE(offset(3), offset(0)) << "%0 is read after the matmul_add";
  EXPECT_EQ(offset(4), offset(0)) << "%0 dies at the matmul_add";
  EXPECT_EQ(offset(6), offset(5)) << "add writes over the operand that dies";
  EXPECT_NE(offset(7), offset(6)) << "r is also x";
  EXPECT_EQ(offset(8), offset(7));
  test::expectLogitsClose(test::decodeLogits(*m, bytes, tokens), unplanned, 0, "planned");
}

TEST(PlanMemory, TheCheckerCatchesAnOverlap) {
  auto model = test::LoadedModel::load(test::modelPath("stories260K.bin"));
  ASSERT_TRUE(model.module);
  Module &m = *model.module;
  EXPECT_TRUE(test::runPass(m, planWithReuse));
  // %1 (rmsnorm) moved onto %0 (embedding), which lives on as the residual.
  const Function &f = *m.function("decode");
  f.ops()[1]->result()->setArenaOffset(f.ops()[0]->result()->arenaOffset());
  EXPECT_NONFATAL_FAILURE(expectValidPlan(m), "are live together and overlap");
}

TEST(PlanMemory, OptimizedModulesUpdateTheResidualInPlace) {
  for (const test::RealModel &real : test::kRealModels) {
    SCOPED_TRACE(real.file);
    auto model = test::LoadedModel::load(test::modelPath(real.file));
    ASSERT_TRUE(model.module);
    Module &m = *model.module;
    optimizeUnplanned(m);
    EXPECT_TRUE(test::runPass(m, planWithReuse));
    unsigned inPlace = expectValidPlan(m);
    unsigned matmulAdds = 0;
    for (const auto &f : m.functions()) matmulAdds += test::countOps(*f, OpKind::MatMulAdd);
    EXPECT_GT(matmulAdds, 0u);
    // Every residual update: the stream dies at its matmul_add.
    EXPECT_EQ(inPlace, matmulAdds);
    passes::MemoryPlanStats stats = passes::memoryPlanStats(m);
    EXPECT_GE(stats.arenaBytes, peakLiveBytes(m));
    EXPECT_LT(stats.arenaBytes, stats.unplannedBytes);
    std::cout << real.file << " -O2: memory reduced from " << stats.unplannedBytes << " to " << stats.arenaBytes
              << " bytes (peak live " << peakLiveBytes(m) << ")\n";
  }
}

TEST(PlanMemory, WithoutReuseEveryValueHasItsOwnSlot) {
  auto model = test::LoadedModel::load(test::modelPath("stories260K.bin"));
  ASSERT_TRUE(model.module);
  Module &m = *model.module;
  EXPECT_TRUE(test::runPass(m, planWithoutReuse));
  expectValidPlan(m);
  EXPECT_EQ(uint64_t(m.arenaBytes()), passes::memoryPlanStats(m).unplannedBytes);
  for (const auto &f : m.functions()) {
    std::vector<std::pair<int64_t, int64_t>> slots;
    for (const auto &op : f->ops())
      if (const Value *r = op->result()) slots.push_back({r->arenaOffset(), r->arenaOffset() + slot(r)});
    llvm::sort(slots);
    for (size_t i = 1; i < slots.size(); ++i) EXPECT_LE(slots[i - 1].second, slots[i].first) << "@" << f->name();
  }
}

TEST(PlanMemory, ReplanningIsIdempotent) {
  auto model = test::LoadedModel::load(test::modelPath("llama2xs_gqa_model.bin"));
  ASSERT_TRUE(model.module);
  Module &m = *model.module;
  optimizeUnplanned(m);
  EXPECT_TRUE(test::runPass(m, planWithReuse));
  std::string planned = ir::toString(m);
  EXPECT_FALSE(test::runPass(m, planWithReuse));
  EXPECT_EQ(ir::toString(m), planned);

  // A plan without reuse is replaced completely.
  EXPECT_TRUE(test::runPass(m, planWithoutReuse));
  EXPECT_NE(ir::toString(m), planned);
  EXPECT_TRUE(test::runPass(m, planWithReuse));
  EXPECT_EQ(ir::toString(m), planned);

  // So is a plan read back from text.
  std::unique_ptr<Module> parsed = test::parseOrFail(planned);
  ASSERT_TRUE(parsed);
  EXPECT_FALSE(test::runPass(*parsed, planWithReuse));
  EXPECT_EQ(ir::toString(*parsed), planned);
}

TEST(PlanMemory, ExecutorUsesThePlannedOffsets) {
  auto model = test::LoadedModel::load(test::modelPath("stories260K.bin"));
  ASSERT_TRUE(model.module && model.file);
  Module &m = *model.module;
  EXPECT_TRUE(test::runPass(m, planWithReuse));
  auto weights = runtime::WeightStore::create(m, model.bytes(), "stories260K.bin");
  ASSERT_TRUE(bool(weights)) << llvm::toString(weights.takeError());
  auto exec = runtime::CpuExecutor::create(m, **weights, 1);
  ASSERT_TRUE(bool(exec)) << llvm::toString(exec.takeError());
  EXPECT_EQ((*exec)->arenaBytes(), llvm::alignTo(m.arenaBytes(), 64));
  const Function &f = *m.function("decode");
  const float *base = (*exec)->data(f.ops().front()->result()); // planned at 0
  for (const auto &op : f.ops())
    if (const Value *r = op->result())
      EXPECT_EQ(((*exec)->data(r) - base) * int64_t(sizeof(float)), r->arenaOffset());
}

/// Plans the module `prepare` makes, with and without reuse, and expects
/// bit-identical logits (and greedy tokens) to the unplanned module's.
void expectPlansKeepNumerics(const std::string &path, llvm::function_ref<void(Module &)> prepare, int greedySteps) {
  test::expectPassKeepsNumerics(path, prepare, planWithReuse, /*tolerance=*/0, greedySteps);
  test::expectPassKeepsNumerics(path, prepare, planWithoutReuse, /*tolerance=*/0, greedySteps);
}

TEST(PlanMemory, RealModelsComputeBitIdenticalLogits) {
  for (const test::RealModel &real : test::kRealModels) {
    expectPlansKeepNumerics(test::modelPath(real.file), test::rawImport, 16);
    expectPlansKeepNumerics(test::modelPath(real.file), optimizeUnplanned, 16);
  }
}

TEST(PlanMemory, RandomModelsComputeBitIdenticalLogits) {
  test::TempDir dir;
  for (const test::RandomShape &shape : test::kRandomShapes) {
    SCOPED_TRACE(shape.name);
    std::string path = test::makeRandomModel(dir, shape);
    expectPlansKeepNumerics(path, test::rawImport, 0);
    expectPlansKeepNumerics(path, optimizeUnplanned, 0);
  }
}

} // namespace
