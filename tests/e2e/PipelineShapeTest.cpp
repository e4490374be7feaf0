// What the default pipeline makes of real model shapes: at most 5 ops per
// transformer layer, and an arena of at most 4x the largest activation. The
// shapes need no weights: the module is built from the header alone.

#include "frontends/Llama2c.h"
#include "frontends/Llama2cGenerate.h"
#include "passes/Pipeline.h"
#include "passes/PlanMemory.h"
#include "tests/support/Shapes.h"

#include <gtest/gtest.h>

#include <map>

using namespace llamac;

namespace {

/// Ops per layer, counted by the `layer` attribute of KV ops and the layer
/// prefix of weight names, the way `llamac dump --summary` groups them.
std::map<int64_t, int> opsPerLayer(const ir::Function &f) {
  std::map<int64_t, int> counts;
  int64_t current = -1;
  for (const auto &op : f.ops()) {
    for (const ir::Value *v : op->operands()) {
      llvm::StringRef name = v->name();
      int64_t layer;
      if (v->isWeight() && name.consume_front("l") &&
          !name.take_until([](char c) { return c == '.'; }).getAsInteger(10, layer))
        current = layer;
    }
    if (op->hasAttr(ir::AttrKey::layer)) current = op->intAttr(ir::AttrKey::layer);
    bool global = llvm::any_of(op->operands(), [](const ir::Value *v) {
      return v->isWeight() && !llvm::StringRef(v->name()).startswith("l");
    });
    if (current >= 0 && !global) ++counts[current];
  }
  return counts;
}

TEST(PipelineShape, Stories110MHasAtMostFiveOpsPerLayer) {
  auto m = test::optimizedShape("stories110M");
  ASSERT_TRUE(m);
  for (const char *fn : {"decode", "decode_greedy"}) {
    auto counts = opsPerLayer(*m->function(fn));
    ASSERT_EQ(counts.size(), 12u) << fn;
    for (auto [layer, n] : counts) EXPECT_LE(n, 5) << fn << " layer " << layer;
  }
  // embedding + 12 x 5 + classifier (the final norm is a prologue)
  EXPECT_EQ(m->function("decode")->size(), 1u + 12 * 5 + 1);
}

TEST(PipelineShape, ArenaIsAtMostFourTimesTheLargestActivation) {
  for (const char *shape : {"stories110M", "llama-3.2-1b"}) {
    auto m = test::optimizedShape(shape);
    ASSERT_TRUE(m);
    passes::MemoryPlanStats stats = passes::memoryPlanStats(*m);
    EXPECT_GT(stats.largestValueBytes, 0u);
    EXPECT_LE(stats.arenaBytes, 4 * stats.largestValueBytes) << shape;
    EXPECT_LT(stats.arenaBytes, stats.unplannedBytes) << shape;
  }
}

} // namespace
