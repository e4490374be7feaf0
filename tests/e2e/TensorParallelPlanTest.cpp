// `llamac compile --tp N` end to end on the CPU: the plan holds one weights
// sidecar per rank, llamarun's CPU engine simulates the ranks and gives the
// logits and greedy tokens of the unpartitioned plan; damaged or inconsistent
// tensor parallel plans are rejected by readPlan, and a rank count that does
// not divide the model is rejected by llamac without writing anything.

#include "runtime/Engine.h"
#include "runtime/plan/PlanFile.h"
#include "tests/support/Errors.h"
#include "tests/support/TestModels.h"

#include "llvm/Support/FileSystem.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <fstream>

using namespace llamac;

namespace {

std::string llamac() { return std::string(LLAMAC_BINARY_DIR) + "/tools/llamac"; }

/// Compiles stories260K into `dir` with `flags`; returns the plan's path.
std::string compile(const test::TempDir &dir, const std::string &name, const std::string &flags) {
  std::string plan = dir.file(name + ".pb");
  std::string cmd = llamac() + " compile " + test::modelPath("stories260K.bin") + " -o " + plan +
                    " --arch sm_90 " + flags + " 2>/dev/null";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  return plan;
}

struct PlanRun {
  std::vector<std::vector<float>> logits;
  std::vector<int> greedy;
};

PlanRun runOnCpu(const std::string &path, int steps) {
  PlanRun run;
  auto plan = runtime::readPlan(path);
  if (!plan) {
    ADD_FAILURE() << llvm::toString(plan.takeError());
    return run;
  }
  auto program = runtime::loadProgram(*plan, path);
  if (!program) {
    ADD_FAILURE() << llvm::toString(program.takeError());
    return run;
  }
  auto engine = runtime::createCpuEngine(*plan, *program, 2);
  if (!engine) {
    ADD_FAILURE() << llvm::toString(engine.takeError());
    return run;
  }
  for (int pos = 0; pos < steps; ++pos) {
    auto logits = (*engine)->stepLogits((pos * 131 + 7) % 512, pos);
    if (!logits) {
      ADD_FAILURE() << llvm::toString(logits.takeError());
      return run;
    }
    run.logits.emplace_back(logits->begin(), logits->end());
  }
  int token = 1;
  for (int pos = 0; pos < steps; ++pos) {
    auto next = (*engine)->stepGreedy(token, pos);
    if (!next) {
      ADD_FAILURE() << llvm::toString(next.takeError());
      return run;
    }
    run.greedy.push_back(token = *next);
  }
  return run;
}

TEST(TensorParallelPlan, SimulatedRanksMatchTheUnpartitionedPlan) {
  test::TempDir dir;
  PlanRun single = runOnCpu(compile(dir, "tp0", ""), 48);
  ASSERT_EQ(single.greedy.size(), 48u);
  for (int ranks : {1, 2, 4}) {
    SCOPED_TRACE("--tp " + std::to_string(ranks));
    std::string path = compile(dir, "tp" + std::to_string(ranks), "--tp " + std::to_string(ranks));
    for (int r = 0; r < ranks && ranks > 1; ++r)
      EXPECT_TRUE(llvm::sys::fs::exists(path + ".weights.rank" + std::to_string(r)));
    PlanRun split = runOnCpu(path, 48);
    ASSERT_EQ(split.logits.size(), single.logits.size());
    double worst = 0;
    for (size_t s = 0; s < single.logits.size(); ++s)
      worst = std::max(worst, test::relativeError(split.logits[s], single.logits[s]));
    EXPECT_LE(worst, 1e-5);
    std::printf("stories260K plan, --tp %d on the CPU: largest relative logit error vs no --tp %.3g\n", ranks, worst);
    EXPECT_EQ(split.greedy, single.greedy);
  }
}

TEST(TensorParallelPlan, RejectsRanksThatDoNotDivideTheModel) {
  test::TempDir dir;
  std::string plan = dir.file("tp3.pb");
  std::string cmd = llamac() + " compile " + test::modelPath("stories260K.bin") + " -o " + plan + " --tp 3 2>&1";
  FILE *pipe = popen(cmd.c_str(), "r");
  ASSERT_TRUE(pipe);
  std::string output;
  char buffer[512];
  while (fgets(buffer, sizeof(buffer), pipe)) output += buffer;
  EXPECT_NE(pclose(pipe), 0);
  EXPECT_NE(output.find("cannot split layer 0's attention over 3 ranks: it has 8 query heads and 4 KV heads"),
            std::string::npos)
      << output;
  std::error_code ec;
  EXPECT_TRUE(llvm::sys::fs::directory_iterator(dir.path(), ec) == llvm::sys::fs::directory_iterator())
      << "llamac left files behind";
}

/// Rewrites the plan at `path` after `edit`.
void rewrite(const std::string &path, const std::function<void(plan::Plan &)> &edit) {
  auto loaded = runtime::readPlan(path, runtime::VerifyWeights::No);
  ASSERT_TRUE(bool(loaded)) << llvm::toString(loaded.takeError());
  plan::Plan p = loaded->plan;
  edit(p);
  std::ofstream(path, std::ios::binary | std::ios::trunc) << p.SerializeAsString();
}

std::string readError(const std::string &path) {
  auto loaded = runtime::readPlan(path);
  if (loaded) return "";
  return llvm::toString(loaded.takeError());
}

TEST(TensorParallelPlan, ReadPlanRejectsInconsistentPlans) {
  test::TempDir dir;
  std::string path = compile(dir, "tp2", "--tp 2");
  ASSERT_EQ(readError(path), "");

  // A damaged rank 1 sidecar is named.
  {
    std::fstream f(path + ".weights.rank1", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(300);
    f.put('\x5a');
  }
  std::string damaged = readError(path);
  EXPECT_NE(damaged.find("tp2.pb.weights.rank1: checksum mismatch"), std::string::npos) << damaged;

  path = compile(dir, "again", "--tp 2");
  rewrite(path, [](plan::Plan &p) { p.clear_rank_weights(); });
  EXPECT_NE(readError(path).find("tensor_parallel 2 with 0 per-rank weights files, expected 1"), std::string::npos)
      << readError(path);

  path = compile(dir, "version", "--tp 2");
  rewrite(path, [](plan::Plan &p) { p.set_format_version(runtime::kPlanFormatVersion); });
  EXPECT_NE(readError(path).find("expected version 2 exactly for tensor parallel plans"), std::string::npos)
      << readError(path);

  path = compile(dir, "offsets", "--tp 2");
  rewrite(path, [](plan::Plan &p) { p.mutable_rank_weights(0)->mutable_tensors(1)->set_offset(0); });
  EXPECT_NE(readError(path).find("differs from rank 0's"), std::string::npos) << readError(path);

  path = compile(dir, "collective", "--tp 2");
  rewrite(path, [](plan::Plan &p) {
    for (auto &f : *p.mutable_functions())
      for (auto &l : *f.mutable_launches())
        if (l.has_collective()) l.mutable_collective()->set_recv_offset(p.memory().arena_bytes());
  });
  EXPECT_NE(readError(path).find("receive buffer"), std::string::npos) << readError(path);
}

} // namespace
