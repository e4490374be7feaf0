//===- tests/cuda/KernelCompileTest.cpp - Every template compiles cleanly -===//
//
// Instantiates every kernel template through a wrapper like the code
// generator's, at awkward sizes and all weight types, and compiles it with
// NVRTC for each architecture llamac targets. A compile error or any warning
// fails. Needs libnvrtc (CI has the CUDA toolkit); without it the test fails
// unless LLAMAC_NO_NVRTC=1 says that is expected.
//
//===----------------------------------------------------------------------===//

#include "tests/cuda/KernelWrappers.h"

#include "codegen/KernelSources.h"
#include "codegen/kernels/attention.cuh"
#include "codegen/kernels/matmul.cuh"
#include "codegen/kernels/matmul_argmax.cuh"
#include "codegen/kernels/matmul_qkv_rope_kv.cuh"
#include "codegen/kernels/persistent.cuh"
#include "runtime/cuda/Nvrtc.h"

#include <gtest/gtest.h>

#include <regex>
#include <set>

#include <algorithm>
#include <atomic>
#include <iostream>
#include <cstdlib>
#include <mutex>
#include <thread>

namespace llamac::test {
namespace {

using ir::DType;
using runtime::cuda::Nvrtc;

const char *const kArchs[] = {"sm_80", "sm_86", "sm_89", "sm_90"};

/// Compiles in parallel on the two cores CI has.
constexpr int kCompileThreads = 2;

bool nvrtcOptional() {
  const char *value = std::getenv("LLAMAC_NO_NVRTC");
  return value && std::string(value) == "1";
}

/// One program per op: its instantiations at the sizes that stress it.
std::vector<std::pair<std::string, std::vector<KernelWrapper>>> programs() {
  const DType types[] = {DType::f32, DType::f16, DType::bf16};
  std::vector<std::pair<std::string, std::vector<KernelWrapper>>> result;

  std::vector<KernelWrapper> matmuls, fused, small;
  for (DType t : types) {
    // K = 250: no vector path for any type; K = 264: vector path for all,
    // with a tail of vectors that does not fill the unrolled steps.
    // Every split (warps per row) appears with every type.
    matmuls.push_back(matmulKernel(257, 250, t, true, 1));
    matmuls.push_back(matmulKernel(64, 264, t, false, 8));
    matmuls.push_back(matmulAddKernel(257, 250, t, false, 2));
    matmuls.push_back(matmulAddKernel(768, 768, t, true, 1));
    fused.push_back(matmulSwigluKernel(257, 250, t, true, 4));
    fused.push_back(matmulSwigluKernel(2048, 768, t, false, 1));
    fused.push_back(matmulQkvKernel(64, 16, 16, 250, t, true, 2));
    fused.push_back(matmulQkvRopeKvKernel(96, 32, 250, 8, t, true, 8));
    fused.push_back(matmulQkvRopeKvKernel(768, 256, 768, 128, t, false, 1));
    fused.push_back(matmulArgmaxKernel(257, 250, t, true, 4));
    fused.push_back(matmulArgmaxKernel(257, 250, t, true, 2, /*advancesPosition=*/true));
    small.push_back(argmaxKeysChainedKernel(33, 257, t));
    small.push_back(embeddingKernel(257, t));
    small.push_back(rmsnormKernel(250, t));
  }
  fused.push_back(argmaxKeysKernel(33, launch::kArgmaxThreads));
  fused.push_back(argmaxKeysKernel(33, launch::kPersistentThreads));
  fused.push_back(codegen::argmaxShardKeyKernel(33, 16032));
  result.push_back({"matmul", matmuls});
  result.push_back({"fused_matmul", fused});

  small.push_back(rmsNormalizeKernel(7));
  small.push_back(ropeKernel(96, 16));
  small.push_back(ropeKernel(256, 128));
  small.push_back(kvWriteKernel(250));
  small.push_back(siluMulKernel(257));
  small.push_back(addKernel(257));
  small.push_back(sliceKernel(3, 250));
  small.push_back(argmaxKernel(32000));
  small.push_back(advanceGreedyKernel());
  result.push_back({"elementwise", small});

  std::vector<KernelWrapper> attention;
  attention.push_back(attentionKernel(4, 2, 8, 7));
  attention.push_back(attentionKernel(6, 6, 16, 1));
  attention.push_back(attentionKernel(8, 2, 64, 512));
  attention.push_back(attentionKernel(4, 1, 128, 8192));
  attention.push_back(attentionKernel(2, 2, 6, 7)); // a head size that is not a multiple of 4
  attention.push_back(attentionSplitKernel(4, 2, 8, 7));
  attention.push_back(attentionSplitKernel(32, 8, 128, 8192));
  attention.push_back(attentionSplitKernel(12, 12, 64, 1024, DType::f16, 8));
  attention.push_back(attentionSplitKernel(32, 8, 128, 2048, DType::bf16, 4));
  attention.push_back(attentionSplitKernel(2, 2, 6, 7, DType::f32, 2)); // row by row, in parts
  result.push_back({"attention", attention});
  return result;
}

TEST(KernelSources, EveryOpHasItsFile) {
  for (const char *name :
       {"common.cuh", "gemv.cuh", "embedding.cuh", "rmsnorm.cuh", "rms_normalize.cuh", "matmul.cuh",
        "matmul_add.cuh", "matmul_swiglu.cuh", "matmul_qkv.cuh", "matmul_qkv_rope_kv.cuh", "rope.cuh",
        "kv_write.cuh", "attention.cuh", "silu_mul.cuh", "add.cuh", "slice.cuh", "argmax.cuh",
        "matmul_argmax.cuh", "advance.cuh", "argmax_shard.cuh", "persistent.cuh"}) {
    llvm::StringRef text = codegen::kernelSource(name);
    EXPECT_TRUE(text.contains("#pragma once")) << name << " is missing or not embedded";
  }
  EXPECT_TRUE(codegen::kernelSource("no_such_file.cuh").empty());
  EXPECT_EQ(codegen::kernelSourceFiles().size(), 21u);
}

// common.cuh: under programmatic dependent launch only weights may be read
// through const __restrict__ pointers (invariant loads may move above the
// dependency wait). Weight parameters are named w, w1, w3, wq, wk, wv, table
// or g throughout the kernel files.
TEST(KernelSources, NoRestrictOnActivations) {
  const std::regex restrictConst(R"(const [A-Za-z_: ]+\*__restrict__ ([A-Za-z0-9_]+))");
  const std::set<std::string> weights = {"w", "w1", "w3", "wq", "wk", "wv", "table", "g"};
  size_t checked = 0;
  for (llvm::StringRef name : codegen::kernelSourceFiles()) {
    std::string text = codegen::kernelSource(name).str();
    for (std::sregex_iterator it(text.begin(), text.end(), restrictConst), end; it != end; ++it) {
      ++checked;
      EXPECT_TRUE(weights.count((*it)[1].str())) << name.str() << ": '" << it->str()
                                                 << "' reads an activation through a const __restrict__ pointer";
    }
  }
  EXPECT_GT(checked, 10u) << "the pattern no longer finds the weight parameters";
}

TEST(KernelLaunch, ShapesCoverTheWork) {
  EXPECT_EQ(launch::matmul(257, 1).gridX, 33u);  // 8 rows per block
  EXPECT_EQ(launch::matmul(257, 4).gridX, 129u); // 2 rows per block
  EXPECT_EQ(launch::matmul(257, 1).blockX, 256u);
  EXPECT_EQ(launch::matmulQkvRopeKv(96, 32, 1).gridX, 10u); // 80 row pairs
  // Rows of at most one batch per lane: at most kMatmulArgmaxMaxBlocks
  // blocks, rows in turn; longer rows one per warp.
  EXPECT_EQ(launch::matmulArgmaxPartials(16000, 768, 2, 1), 2000u);
  EXPECT_EQ(launch::matmulArgmaxPartials(32000, 768, 2, 1), 2048u);  // stories110M f16: 3 loads per lane
  EXPECT_EQ(launch::matmulArgmaxPartials(32000, 768, 4, 2), 2048u);  // f32 in pairs of warps: 3
  EXPECT_EQ(launch::matmulArgmaxPartials(128256, 2048, 2, 1), 2048u); // Llama-3.2-1B: 8
  EXPECT_EQ(launch::matmulArgmaxPartials(128256, 4096, 2, 1), 16032u); // Llama-3-8B: 16
  EXPECT_EQ(launch::matmulArgmaxPartials(32000, 250, 4, 1), 2048u);    // scalar path: 250 loads, 8 per lane
  // Splits: 2 or 4 warps for one-row tasks of matrices up to 16 MB (fewer
  // where fewer give 192 blocks and 8 loads per lane), 1 for their row pairs;
  // larger matrices: one-row tasks 1 up to 32 loads per lane, else (and row
  // pairs) each lane within 8 loads of a row.
  EXPECT_EQ(launch::gemvSplit(768, 768, 4, 1), 2u);     // 2.4 MB, 6 loads per lane
  EXPECT_EQ(launch::gemvSplit(768, 2048, 4, 1), 2u);    // 6.3 MB, 16 loads per lane: 192 blocks of 8 with two
  EXPECT_EQ(launch::gemvSplit(768, 2048, 2, 1), 4u);    // f16: two would leave 4 loads per lane
  EXPECT_EQ(launch::gemvSplit(2048, 2048, 2, 1), 1u);   // 8.4 MB, 8 loads per lane, 256 blocks with one warp
  EXPECT_EQ(launch::gemvSplit(512, 2048, 2, 1), 4u);    // 64 blocks with one warp, 128 with two
  EXPECT_EQ(launch::gemvSplit(4096, 768, 4, 2), 1u);    // row pairs, 12.6 MB
  EXPECT_EQ(launch::gemvSplit(257, 250, 4, 1), 4u);     // scalar path: 250 loads, 8 per lane
  EXPECT_EQ(launch::gemvSplit(2048, 8192, 2, 1), 1u);   // Llama-3.2-1B w2, 33.5 MB: 32 loads per lane, one warp
  EXPECT_EQ(launch::gemvSplit(4096, 4096, 2, 1), 1u);   // Llama-3-8B wo, 33.5 MB: 16 loads per lane
  EXPECT_EQ(launch::gemvSplit(128256, 4096, 2, 1), 1u); // its classifier
  EXPECT_EQ(launch::gemvSplit(2048, 8320, 2, 1), 8u);   // one load past 32 per lane: split to 5 per lane
  EXPECT_EQ(launch::gemvSplit(32000, 768, 4, 1), 1u);   // a classifier, 98 MB, 6 loads per lane
  EXPECT_EQ(launch::gemvSplit(4096, 14336, 2, 1), 8u);  // Llama-3-8B w2: 56 loads per lane, 7 with 8 warps
  EXPECT_EQ(launch::gemvSplit(28672, 4096, 2, 2), 2u);  // its w1/w3 pairs: 16 loads per lane
  // Loads pinned before the wait: the whole batch for rows of one batch per lane, else none.
  EXPECT_EQ(launch::gemvPinnedLoads(768, 4, 2), 8u);    // stories110M wo: 3 loads per lane
  EXPECT_EQ(launch::gemvPinnedLoads(2048, 4, 2), 8u);   // its w2: 8
  EXPECT_EQ(launch::gemvPinnedLoads(2048, 2, 1), 8u);   // Llama-3.2-1B wo, qkv, swiglu, classifier: 8
  EXPECT_EQ(launch::gemvPinnedLoads(8192, 2, 1), 0u);   // its w2: 32
  EXPECT_EQ(launch::gemvPinnedLoads(4096, 2, 1), 0u);   // Llama-3-8B wo and classifier: 16
  EXPECT_EQ(launch::gemvPinnedLoads(14336, 2, 8), 8u);  // its w2: 7
  EXPECT_EQ(launch::elementwise(257).gridX, 2u);
  EXPECT_EQ(launch::attentionSplit(32, 8192).gridY, 64u);
  EXPECT_EQ(launch::attentionPartialFloats(32, 128, 8192), 32u * 64u * 130u);
  EXPECT_EQ(launch::attentionSplit(12, 1024, 8).gridY, 8u);    // one span of 1,024 positions over 8 blocks
  EXPECT_EQ(launch::attentionSplit(32, 2048, 4).gridY, 16u);   // 4 spans of 512 over 4 blocks each
  EXPECT_EQ(launch::attentionSplit(4, 300, 8).gridY, 8u);
  EXPECT_EQ(launch::attentionPartialFloats(12, 64, 1024, 8), 12u * 8u * 66u);
  EXPECT_EQ(launch::attentionParts(12), 2u); // stories110M: 24 blocks for the first span
  EXPECT_EQ(launch::attentionParts(32), 1u); // Llama 3
  EXPECT_EQ(launch::attentionParts(4), 8u);
  EXPECT_EQ(launch::attentionParts(9), 2u);
  EXPECT_EQ(launch::attentionParts(64), 1u);
}

TEST(KernelCompile, AllTemplatesAllArchsWithoutWarnings) {
  auto nvrtc = Nvrtc::load();
  if (!nvrtc) {
    std::string why = llvm::toString(nvrtc.takeError());
    if (nvrtcOptional())
      GTEST_SKIP() << "LLAMAC_NO_NVRTC=1: " << why;
    FAIL() << why << "\n(set LLAMAC_NO_NVRTC=1 where NVRTC is not expected)";
  }
  auto version = nvrtc->version();
  std::vector<int> supported = nvrtc->supportedArchs();
  std::cout << "NVRTC " << version.major << "." << version.minor << " from "
            << nvrtc->libraryName().str() << "\n";

  struct Job {
    std::string name, arch, source;
  };
  std::vector<Job> jobs;
  for (const auto &[name, wrappers] : programs()) {
    std::string source = programSource(wrappers);
    for (const char *arch : kArchs) {
      int sm = std::atoi(arch + 3);
      if (std::find(supported.begin(), supported.end(), sm) == supported.end()) {
        ADD_FAILURE() << "NVRTC " << version.major << "." << version.minor << " cannot target " << arch;
        continue;
      }
      jobs.push_back({name, arch, source});
    }
  }

  auto headers = kernelHeaders();
  std::atomic<size_t> next{0};
  std::mutex failuresMutex;
  std::vector<std::string> failures;
  auto worker = [&] {
    for (size_t i = next++; i < jobs.size(); i = next++) {
      const Job &job = jobs[i];
      auto compiled = runtime::cuda::compileCuda(job.source, job.name + ".cu", job.arch, {}, headers);
      std::string failure;
      if (!compiled)
        failure = llvm::toString(compiled.takeError());
      else if (!compiled->log.empty())
        failure = job.name + " for " + job.arch + " compiled with warnings:\n" + compiled->log;
      else if (compiled->image.empty())
        failure = job.name + " for " + job.arch + ": empty cubin";
      if (!failure.empty()) {
        std::lock_guard<std::mutex> lock(failuresMutex);
        failures.push_back(failure);
      }
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < kCompileThreads; ++t)
    threads.emplace_back(worker);
  for (std::thread &t : threads)
    t.join();
  for (const std::string &failure : failures)
    ADD_FAILURE() << failure;
}

/// The tests after AllTemplatesAllArchsWithoutWarnings need NVRTC too; where
/// it is missing, that test fails or says why it skips, and they skip.
#define SKIP_WITHOUT_NVRTC()                                                    \
  if (auto nvrtc = Nvrtc::load(); !nvrtc) {                                     \
    llvm::consumeError(nvrtc.takeError());                                      \
    GTEST_SKIP() << "covered by AllTemplatesAllArchsWithoutWarnings";           \
  }

TEST(KernelCompile, PtxForACompute) {
  SKIP_WITHOUT_NVRTC();
  auto compiled = runtime::cuda::compileCuda(programSource({addKernel(5)}), "add.cu", "compute_80", {},
                                             kernelHeaders());
  ASSERT_TRUE(bool(compiled)) << llvm::toString(compiled.takeError());
  EXPECT_TRUE(compiled->isPtx);
  EXPECT_NE(compiled->image.find(".entry add_n5"), std::string::npos);
}

// gemv.cuh: a row's first batch of loads per lane is plain loads in asm
// volatile, which neither NVVM nor ptxas moves across the dependency wait:
// gemvPinnedLoads of them before it (the whole batch for rows of one batch
// per lane, else none), the rest right after it. Later batches are invariant
// loads (ld.global.nc), issued in later iterations of the batch loop (which
// the PTX may lay out before the wait's code). The SASS placement needs
// cuobjdump (bench/NOTES.md, sessions 6 to 8); this checks that the PTX asks
// for it.
TEST(KernelCompile, PinnedPreloadsComeBeforeTheWait) {
  SKIP_WITHOUT_NVRTC();
  const std::string pinnedLoad = "ld.global.L1::no_allocate.v4.u32", invariantLoad = "ld.global.nc.v4",
                    wait = "griddepcontrol.wait";
  auto count = [](const std::string &text, const std::string &what, size_t from, size_t to) {
    int n = 0;
    for (size_t at = text.find(what, from); at < to; at = text.find(what, at + 1))
      ++n;
    return n;
  };
  bool sawWholeBatch = false, sawNone = false;
  struct Case {
    KernelWrapper kernel;
    int k;
    DType type;
    int split;
    int rows;        // per task
    int before;      // 16-byte loads per lane and row before the wait
    int after;       // and of the first batch, after it
    bool moreBatches;
  };
  const Case cases[] = {
      {matmulAddKernel(768, 768, DType::f32, false, 2), 768, DType::f32, 2, 1, 3, 0, false},      // stories110M wo
      {matmulSwigluKernel(2048, 768, DType::f16, true, 1), 768, DType::f16, 1, 2, 3, 0, false},   // two rows
      {matmulAddKernel(2048, 8192, DType::bf16, false, 1), 8192, DType::bf16, 1, 1, 0, 8, true},  // 1B w2: 4 batches
  };
  for (const Case &c : cases) {
    const unsigned pinned = launch::gemvPinnedLoads(unsigned(c.k), ir::byteSize(c.type), unsigned(c.split));
    auto compiled = runtime::cuda::compileCuda(programSource({c.kernel}), c.kernel.name + ".cu", "compute_90", {},
                                               kernelHeaders());
    ASSERT_TRUE(bool(compiled)) << llvm::toString(compiled.takeError());
    const std::string &ptx = compiled->image;
    const size_t waitAt = ptx.find(wait);
    ASSERT_NE(waitAt, std::string::npos) << c.kernel.name << " never waits";
    EXPECT_EQ(unsigned(c.before), std::min<unsigned>(pinned, unsigned(c.before + c.after))) << c.kernel.name;
    EXPECT_EQ(count(ptx, pinnedLoad, 0, waitAt), c.rows * c.before) << c.kernel.name << ": loads before the wait";
    EXPECT_EQ(count(ptx, pinnedLoad, waitAt, std::string::npos), c.rows * c.after)
        << c.kernel.name << ": the first batch's loads after the wait";
    EXPECT_EQ(count(ptx, invariantLoad, 0, std::string::npos) > 0, c.moreBatches)
        << c.kernel.name << ": invariant loads are for later batches only";
    (pinned == 0 ? sawNone : sawWholeBatch) = true;
  }
  EXPECT_TRUE(sawWholeBatch && sawNone) << "the cases no longer cover both counts of gemvPinnedLoads";
}

// gemv.cuh's launch::gemvLaunchesNextAfterPreloads: with 16-bit weights a
// matmul kernel lets the next kernel launch only once it has issued its
// preloads, before its wait; with f32 weights at its start, before any load.
// So does the chained classifier, whose block 0 first waits, stores pos and
// fences it, before any trigger (advance.cuh).
TEST(KernelCompile, MatmulsLaunchTheNextKernelAfterTheirPreloadsFor16BitWeights) {
  SKIP_WITHOUT_NVRTC();
  const std::string pinnedLoad = "ld.global.L1::no_allocate.v4.u32", wait = "griddepcontrol.wait",
                    trigger = "griddepcontrol.launch_dependents";
  for (DType t : {DType::f32, DType::f16, DType::bf16}) {
    const bool afterLoads = t != DType::f32;
    EXPECT_EQ(launch::gemvLaunchesNextAfterPreloads(ir::byteSize(t)), afterLoads);
    for (const KernelWrapper &kernel : {matmulAddKernel(768, 768, t, false, 2),
                                        matmulSwigluKernel(2048, 768, t, true, 1),
                                        matmulQkvRopeKvKernel(768, 768, 768, 64, t, true, 1),
                                        matmulArgmaxKernel(32000, 768, t, true, 1, /*advancesPosition=*/true)}) {
      auto compiled = runtime::cuda::compileCuda(programSource({kernel}), kernel.name + ".cu", "compute_90", {},
                                                 kernelHeaders());
      ASSERT_TRUE(bool(compiled)) << llvm::toString(compiled.takeError());
      const std::string &ptx = compiled->image;
      const bool advances = kernel.name.find("_advance") != std::string::npos;
      // The chained classifier's block 0 waits first: find the matmul's wait.
      const size_t waitAt = advances ? ptx.find(wait, ptx.find(wait) + 1) : ptx.find(wait);
      const size_t triggerAt = ptx.rfind(trigger, waitAt), loadAt = ptx.find(pinnedLoad);
      ASSERT_NE(waitAt, std::string::npos) << kernel.name;
      ASSERT_NE(triggerAt, std::string::npos) << kernel.name << ": no trigger before the wait";
      ASSERT_NE(loadAt, std::string::npos) << kernel.name;
      EXPECT_LT(loadAt, waitAt) << kernel.name << ": the preloads come before the wait";
      if (afterLoads)
        EXPECT_GT(triggerAt, loadAt) << kernel.name << ": the next kernel launches after the preloads";
      else
        EXPECT_LT(triggerAt, loadAt) << kernel.name << ": the next kernel launches at the start";
      EXPECT_EQ(ptx.find(trigger, waitAt), std::string::npos) << kernel.name << ": a trigger after the wait";
      if (advances) {
        // Block 0: wait, store pos, fence, and only then any trigger.
        const size_t firstWait = ptx.find(wait), fence = ptx.find("membar.gl", firstWait);
        EXPECT_LT(firstWait, ptx.find(trigger)) << kernel.name << ": a trigger before block 0's wait";
        EXPECT_LT(ptx.find("st.global", firstWait), fence) << kernel.name << ": pos is stored after the wait";
        EXPECT_LT(fence, ptx.find(trigger)) << kernel.name << ": the store is fenced before any trigger";
      }
    }
  }
}

// Attention over a span in parts: on sm_90 the parts are a cluster (the
// wrapper declares its shape) whose blocks store their sums into the first
// one's shared memory; before it, the same source merges over global memory,
// with no cluster instruction.
TEST(KernelCompile, AttentionPartsAreAClusterOnlyFromSm90) {
  SKIP_WITHOUT_NVRTC();
  for (int parts : {1, 4}) {
    KernelWrapper kernel = attentionSplitKernel(12, 12, 64, 1024, DType::f32, parts);
    for (const char *arch : {"compute_80", "compute_90"}) {
      auto compiled = runtime::cuda::compileCuda(programSource({kernel}), kernel.name + ".cu", arch, {},
                                                 kernelHeaders());
      ASSERT_TRUE(bool(compiled)) << kernel.name << ": " << llvm::toString(compiled.takeError());
      const std::string &ptx = compiled->image;
      const bool cluster = parts > 1 && std::string(arch) == "compute_90";
      EXPECT_EQ(ptx.find(".reqnctapercluster") != std::string::npos, cluster) << kernel.name << " " << arch;
      if (cluster) {
        EXPECT_NE(ptx.find(".reqnctapercluster 1, 4, 1"), std::string::npos) << kernel.name;
      }
      EXPECT_EQ(ptx.find("barrier.cluster") != std::string::npos, cluster) << kernel.name << " " << arch;
      EXPECT_EQ(ptx.find("st.async.shared::cluster") != std::string::npos, cluster) << kernel.name << " " << arch;
      EXPECT_EQ(ptx.find("mbarrier.try_wait") != std::string::npos, cluster) << kernel.name << " " << arch;
    }
  }
}

// common.cuh's timeline (LLAMAC_TIMELINE, bench/timeline.py): the options
// the runtime recompiles with build, and the kernels then stamp the timer;
// without them they do not.
TEST(KernelCompile, TimelineStampsOnlyWhenCompiledIn) {
  SKIP_WITHOUT_NVRTC();
  const std::vector<std::string> timeline = {"-DLLAMAC_TIMELINE=0x7f0000000000ull", "-DLLAMAC_TIMELINE_CAPACITY=1024u",
                                             "-DLLAMAC_TIMELINE_KERNEL=3u", "-DLLAMAC_TIMELINE_MARK=6"};
  for (const KernelWrapper &kernel : {matmulSwigluKernel(2048, 768, DType::f16, true, 1),
                                      attentionSplitKernel(12, 12, 64, 1024)}) {
    for (bool on : {false, true}) {
      auto compiled = runtime::cuda::compileCuda(programSource({kernel}), kernel.name + ".cu", "compute_90",
                                                 on ? timeline : std::vector<std::string>{}, kernelHeaders());
      ASSERT_TRUE(bool(compiled)) << kernel.name << ": " << llvm::toString(compiled.takeError());
      const std::string &ptx = compiled->image;
      EXPECT_EQ(ptx.find("%globaltimer") != std::string::npos, on) << kernel.name;
      EXPECT_EQ(ptx.find("%gridid") != std::string::npos, on) << kernel.name;
    }
  }
}

TEST(KernelCompile, ErrorsCarryTheLog) {
  SKIP_WITHOUT_NVRTC();
  auto compiled = runtime::cuda::compileCuda("extern \"C\" __global__ void k() { undeclared(); }",
                                             "broken.cu", "sm_80");
  ASSERT_FALSE(bool(compiled));
  std::string message = llvm::toString(compiled.takeError());
  EXPECT_NE(message.find("broken.cu: NVRTC compilation for sm_80 failed"), std::string::npos) << message;
  EXPECT_NE(message.find("undeclared"), std::string::npos) << message;

  auto badArch = runtime::cuda::compileCuda("", "empty.cu", "90");
  ASSERT_FALSE(bool(badArch));
  EXPECT_NE(llvm::toString(badArch.takeError()).find("architecture must look like sm_90"),
            std::string::npos);
}

TEST(KernelCompile, WarningsReachTheCaller) {
  SKIP_WITHOUT_NVRTC();
  // An unused variable is a warning, not an error: the log must show it.
  auto compiled = runtime::cuda::compileCuda(
      "extern \"C\" __global__ void k(int* p) { int unused = 3; *p = 1; }", "warn.cu", "sm_80");
  ASSERT_TRUE(bool(compiled)) << llvm::toString(compiled.takeError());
  EXPECT_NE(compiled->log.find("unused"), std::string::npos) << "log: " << compiled->log;
}

} // namespace
} // namespace llamac::test
