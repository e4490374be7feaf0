//===- codegen/KernelWrappers.cpp - One extern "C" wrapper per kernel -----===//

#include "codegen/KernelWrappers.h"

#include "codegen/KernelSources.h"
#include "codegen/kernels/argmax.cuh"
#include "codegen/kernels/argmax_shard.cuh"
#include "codegen/kernels/attention.cuh"
#include "codegen/kernels/gemv.cuh"
#include "codegen/kernels/persistent.cuh"
#include "codegen/kernels/rmsnorm.cuh"

#include "llvm/Support/FormatVariadic.h"

#include <algorithm>
#include <cassert>
#include <functional>
#include <set>

namespace llamac::codegen {

namespace {

/// "f32", "f16", "bf16" in kernel names.
std::string typeTag(ir::DType dtype) { return ir::toString(dtype).str(); }

std::string rmsTag(bool rms) { return rms ? "_rms" : ""; }

std::string boolText(bool value) { return value ? "true" : "false"; }

/// Every kernel first lets the next one launch (the statement `allow`, by
/// default allowDependentLaunch) and waits for the kernel before it. Its
/// first statement is the timeline's (common.cuh's KernelTimeline: nothing
/// unless a timing run compiles it in). `attributes` follow
/// __launch_bounds__, whose second argument (minimum blocks per SM) is
/// `minBlocks` where not 0.
KernelWrapper make(std::string file, std::string name, unsigned threads, std::string params,
                   std::string call, Wait waits = Wait::InWrapper,
                   std::string attributes = "", unsigned minBlocks = 0, std::string allow = "") {
  if (allow.empty()) allow = "  llamac::detail::allowDependentLaunch();\n";
  const char *wait = "  llamac::detail::waitForPreviousKernel();\n";
  std::string start = std::string("  llamac::detail::KernelTimeline timeline;\n") +
                      (waits == Wait::InWrapper    ? allow + wait
                       : waits == Wait::InTemplate ? allow
                                                   : wait + allow);
  std::string bounds = std::to_string(threads) + (minBlocks ? ", " + std::to_string(minBlocks) : "");
  std::string code = llvm::formatv("extern \"C\" __global__ void __launch_bounds__({0}){5} {1}({2}) {{\n"
                                   "{4}"
                                   "  {3};\n"
                                   "}\n",
                                   bounds, name, params, call, start, attributes.empty() ? "" : " " + attributes)
                         .str();
  KernelWrapper w;
  w.file = std::move(file);
  w.name = std::move(name);
  w.threads = threads;
  w.code = std::move(code);
  w.params = std::move(params);
  w.call = std::move(call);
  w.waits = waits;
  return w;
}

/// The matmul family's `allow` (make): the next kernel launches now, or once
/// the block's warps issue their preloads of `weight` (gemv.cuh's
/// launch::gemvLaunchesNextAfterPreloads, which takes the weight type from it).
std::string gemvAllow(const char *weight) {
  return llvm::formatv("  llamac::detail::allowDependentLaunchAtStart({0});\n", weight).str();
}

/// "" for an f32 KV cache, "_kvf16" for an f16 one.
std::string kvTag(ir::DType kv) { return kv == ir::DType::f32 ? "" : "_kv" + typeTag(kv); }

/// "" for one warp per row, "_s4" for four (gemv.cuh's split-K).
std::string splitTag(int split) {
  assert((split == 1 || split == 2 || split == 4 || split == 8) && "gemv.cuh takes 1, 2, 4 or 8 warps per task");
  return split == 1 ? "" : "_s" + std::to_string(split);
}

std::string floatText(float v) { return llvm::formatv("{0:e8}f", v).str(); }

} // namespace

std::string cudaTypeName(ir::DType dtype) {
  switch (dtype) {
  case ir::DType::f32:
    return "float";
  case ir::DType::f16:
    return "llamac::f16";
  case ir::DType::bf16:
    return "llamac::bf16";
  default:
    return "unsupported";
  }
}

KernelWrapper embeddingKernel(int d, ir::DType table) {
  std::string t = cudaTypeName(table);
  return make("embedding.cuh", llvm::formatv("embedding_d{0}_{1}", d, typeTag(table)),
              launch::kElementwiseThreads, "const " + t + "* table, const int* token, float* y",
              llvm::formatv("llamac::embedding<{0}, {1}>(table, token, y)", d, t), Wait::FirstOfStep);
}

KernelWrapper rmsnormKernel(int d, ir::DType gain, float eps) {
  std::string t = cudaTypeName(gain);
  return make("rmsnorm.cuh", llvm::formatv("rmsnorm_d{0}_{1}", d, typeTag(gain)),
              launch::kRmsNormThreads, "const float* x, const " + t + "* g, float* y",
              llvm::formatv("llamac::rmsnorm<{0}, {1}>(x, g, y, {2})", d, t, floatText(eps)));
}

KernelWrapper rmsNormalizeKernel(int d, float eps) {
  return make("rms_normalize.cuh", llvm::formatv("rms_normalize_d{0}", d), launch::kRmsNormThreads,
              "const float* x, float* y",
              llvm::formatv("llamac::rms_normalize<{0}>(x, y, {1})", d, floatText(eps)));
}

KernelWrapper matmulKernel(int n, int k, ir::DType weights, bool rms, float eps, int split) {
  std::string t = cudaTypeName(weights);
  return make("matmul.cuh",
              llvm::formatv("matmul_n{0}_k{1}_{2}{3}{4}", n, k, typeTag(weights), rmsTag(rms), splitTag(split)),
              launch::kGemvThreads, "const float* x, const " + t + "* w, float* y",
              llvm::formatv("llamac::matmul<{0}, {1}, {2}, {3}, {5}>(x, w, y, {4})", n, k, t, boolText(rms),
                            floatText(eps), split),
              Wait::InTemplate, "", 0, gemvAllow("w"));
}

KernelWrapper matmulAddKernel(int n, int k, ir::DType weights, bool rms, float eps, int split) {
  std::string t = cudaTypeName(weights);
  return make("matmul_add.cuh",
              llvm::formatv("matmul_add_n{0}_k{1}_{2}{3}{4}", n, k, typeTag(weights), rmsTag(rms), splitTag(split)),
              launch::kGemvThreads, "const float* x, const " + t + "* w, const float* r, float* y",
              llvm::formatv("llamac::matmul_add<{0}, {1}, {2}, {3}, {5}>(x, w, r, y, {4})", n, k, t,
                            boolText(rms), floatText(eps), split),
              Wait::InTemplate, "", 0, gemvAllow("w"));
}

KernelWrapper matmulSwigluKernel(int n, int k, ir::DType weights, bool rms, float eps, int split) {
  std::string t = cudaTypeName(weights);
  return make("matmul_swiglu.cuh",
              llvm::formatv("matmul_swiglu_n{0}_k{1}_{2}{3}{4}", n, k, typeTag(weights), rmsTag(rms), splitTag(split)),
              launch::kGemvThreads,
              "const float* x, const " + t + "* w1, const " + t + "* w3, float* y",
              llvm::formatv("llamac::matmul_swiglu<{0}, {1}, {2}, {3}, {5}>(x, w1, w3, y, {4})", n, k, t,
                            boolText(rms), floatText(eps), split),
              Wait::InTemplate, "", 0, gemvAllow("w1"));
}

KernelWrapper matmulQkvKernel(int nq, int nk, int nv, int k, ir::DType weights, bool rms, float eps, int split) {
  std::string t = cudaTypeName(weights);
  return make("matmul_qkv.cuh",
              llvm::formatv("matmul_qkv_q{0}_k{1}_v{2}_k{3}_{4}{5}{6}", nq, nk, nv, k, typeTag(weights),
                            rmsTag(rms), splitTag(split)),
              launch::kGemvThreads,
              "const float* x, const " + t + "* wq, const " + t + "* wk, const " + t + "* wv, float* y",
              llvm::formatv("llamac::matmul_qkv<{0}, {1}, {2}, {3}, {4}, {5}, {7}>(x, wq, wk, wv, y, {6})", nq,
                            nk, nv, k, t, boolText(rms), floatText(eps), split),
              Wait::InTemplate, "", 0, gemvAllow("wq"));
}

KernelWrapper matmulQkvRopeKvKernel(int nq, int nk, int k, int headSize, ir::DType weights, bool rms,
                                    float eps, float theta, int split, ir::DType kv) {
  std::string t = cudaTypeName(weights), c = cudaTypeName(kv);
  return make("matmul_qkv_rope_kv.cuh",
              llvm::formatv("matmul_qkv_rope_kv_q{0}_kv{1}_k{2}_hs{3}_{4}{5}{6}{7}", nq, nk, k, headSize,
                            typeTag(weights), rmsTag(rms), splitTag(split), kvTag(kv)),
              launch::kGemvThreads,
              "const float* x, const " + t + "* wq, const " + t + "* wk, const " + t + "* wv, const int* pos, " + c +
                  "* kcache, " + c + "* vcache, float* y",
              llvm::formatv("llamac::matmul_qkv_rope_kv<{0}, {1}, {2}, {3}, {4}, {5}, {8}, {9}>(x, wq, wk, wv, "
                            "pos, kcache, vcache, y, {6}, {7})",
                            nq, nk, k, headSize, t, boolText(rms), floatText(theta), floatText(eps), split, c),
              Wait::InTemplate, "", 0, gemvAllow("wq"));
}

KernelWrapper matmulArgmaxKernel(int n, int k, ir::DType weights, bool rms, float eps, int split,
                                 bool advancesPosition) {
  std::string t = cudaTypeName(weights);
  return make(advancesPosition ? "advance.cuh" : "matmul_argmax.cuh",
              llvm::formatv("matmul_argmax_n{0}_k{1}_{2}{3}{4}{5}", n, k, typeTag(weights), rmsTag(rms),
                            splitTag(split), advancesPosition ? "_advance" : ""),
              launch::kGemvThreads,
              "const float* x, const " + t + "* w, unsigned long long* keys" +
                  (advancesPosition ? ", int* pos" : ""),
              llvm::formatv("llamac::matmul_argmax<{0}, {1}, {2}, {3}, {5}>(x, w, keys, {4})", n, k, t,
                            boolText(rms), floatText(eps), split),
              Wait::InTemplate, "", 0,
              advancesPosition ? "  llamac::advance_position(pos, w);\n" : gemvAllow("w"));
}

KernelWrapper argmaxKeysKernel(int partialKeys, int threads) {
  std::string tag = threads == launch::kArgmaxThreads ? "" : llvm::formatv("_t{0}", threads).str();
  return make("matmul_argmax.cuh", llvm::formatv("argmax_keys_p{0}{1}", partialKeys, tag), threads,
              "const unsigned long long* keys, int* token",
              llvm::formatv("llamac::argmax_keys<{0}, {1}>(keys, token)", partialKeys, threads));
}

KernelWrapper argmaxShardKeyKernel(int partialKeys, int rows) {
  return make("argmax_shard.cuh", llvm::formatv("argmax_shard_key_p{0}_r{1}", partialKeys, rows),
              launch::kArgmaxThreads, "const unsigned long long* keys, int rank, unsigned long long* key",
              llvm::formatv("llamac::argmax_shard_key<{0}, {1}>(keys, rank, key)", partialKeys, rows));
}

KernelWrapper ropeKernel(int n, int headSize, float theta) {
  return make("rope.cuh", llvm::formatv("rope_n{0}_hs{1}", n, headSize), launch::kElementwiseThreads,
              "const float* x, const int* pos, float* y",
              llvm::formatv("llamac::rope<{0}, {1}>(x, pos, y, {2})", n, headSize, floatText(theta)));
}

KernelWrapper kvWriteKernel(int nk, ir::DType kv) {
  std::string c = cudaTypeName(kv);
  return make("kv_write.cuh", llvm::formatv("kv_write_nk{0}{1}", nk, kvTag(kv)), launch::kElementwiseThreads,
              "const float* k, const float* v, const int* pos, " + c + "* kcache, " + c + "* vcache",
              llvm::formatv("llamac::kv_write<{0}, {1}>(k, v, pos, kcache, vcache)", nk, c));
}

// Attention's bounds say one block per SM: without that, ptxas fitted some
// forms in 80 registers, spilling a K row whose store then waited for its
// load before the wait, and so delayed the V rows' loads (bench/NOTES.md,
// session 9).
constexpr unsigned kAttentionMinBlocks = 1;

KernelWrapper attentionKernel(int h, int kvh, int headSize, int seqLen, ir::DType kv) {
  std::string c = cudaTypeName(kv);
  return make("attention.cuh",
              llvm::formatv("attention_h{0}_kvh{1}_hs{2}_s{3}{4}", h, kvh, headSize, seqLen, kvTag(kv)),
              launch::kAttentionThreads,
              "const float* q, const int* pos, const " + c + "* kcache, const " + c + "* vcache, float* out",
              llvm::formatv("llamac::attention<{0}, {1}, {2}, {3}, {4}>(q, pos, kcache, vcache, out)", h, kvh,
                            headSize, seqLen, c),
              Wait::InTemplate, "", kAttentionMinBlocks);
}

KernelWrapper attentionSplitKernel(int h, int kvh, int headSize, int seqLen, ir::DType kv, int parts) {
  assert(parts >= 1 && parts <= launch::kAttentionMaxParts);
  std::string c = cudaTypeName(kv);
  std::string partsTag = parts == 1 ? "" : "_p" + std::to_string(parts);
  return make("attention.cuh",
              llvm::formatv("attention_split_h{0}_kvh{1}_hs{2}_s{3}{4}{5}", h, kvh, headSize, seqLen, kvTag(kv),
                            partsTag),
              launch::kAttentionThreads,
              "const float* q, const int* pos, const " + c + "* kcache, const " + c +
                  "* vcache, float* partials, unsigned* counters, float* out",
              llvm::formatv("llamac::attention_split<{0}, {1}, {2}, {3}, {4}, {5}>(q, pos, kcache, vcache, "
                            "partials, counters, out)",
                            h, kvh, headSize, seqLen, c, parts),
              Wait::InTemplate, parts == 1 ? "" : llvm::formatv("LLAMAC_CLUSTER_DIMS(1, {0}, 1)", parts).str(),
              kAttentionMinBlocks);
}

KernelWrapper siluMulKernel(int n) {
  return make("silu_mul.cuh", llvm::formatv("silu_mul_n{0}", n), launch::kElementwiseThreads,
              "const float* a, const float* b, float* y", llvm::formatv("llamac::silu_mul<{0}>(a, b, y)", n));
}

KernelWrapper addKernel(int n) {
  return make("add.cuh", llvm::formatv("add_n{0}", n), launch::kElementwiseThreads,
              "const float* a, const float* b, float* y", llvm::formatv("llamac::add<{0}>(a, b, y)", n));
}

KernelWrapper sliceKernel(int offset, int size) {
  return make("slice.cuh", llvm::formatv("slice_o{0}_n{1}", offset, size), launch::kElementwiseThreads,
              "const float* x, float* y", llvm::formatv("llamac::slice<{0}, {1}>(x, y)", offset, size));
}

KernelWrapper argmaxKernel(int n) {
  return make("argmax.cuh", llvm::formatv("argmax_n{0}", n), launch::kArgmaxThreads,
              "const float* x, int* token", llvm::formatv("llamac::argmax<{0}>(x, token)", n));
}

KernelWrapper advanceGreedyKernel() {
  return make("advance.cuh", "advance_greedy", launch::kWarpSize,
              "const int* produced, int* token, int* pos, int* history",
              "llamac::advance_greedy(produced, token, pos, history)");
}

KernelWrapper argmaxKeysChainedKernel(int partialKeys, int d, ir::DType table) {
  std::string t = cudaTypeName(table);
  return make("advance.cuh", llvm::formatv("argmax_keys_chained_p{0}_d{1}_{2}", partialKeys, d, typeTag(table)),
              launch::kArgmaxThreads,
              "const unsigned long long* keys, const int* pos, int* history, int* token, const " + t +
                  "* table, float* x",
              llvm::formatv("llamac::argmax_keys_chained<{0}, {1}, {2}>(keys, pos, history, token, table, x)",
                            partialKeys, d, t));
}

KernelWrapper persistentKernel(const std::string &name, llvm::ArrayRef<PersistentPhase> phases,
                               unsigned long long countersOffset) {
  std::string body = llvm::formatv("  llamac::detail::startPersistent(reinterpret_cast<unsigned*>(arena_ + {0}), {1});\n",
                                   countersOffset, phases.size())
                         .str();
  std::vector<std::string> files;
  for (size_t p = 0; p < phases.size(); ++p) {
    const PersistentPhase &phase = phases[p];
    const KernelWrapper &k = *phase.kernel;
    assert(k.threads == unsigned(launch::kPersistentThreads) && "a phase of another block size");
    if (std::find(files.begin(), files.end(), k.file) == files.end()) files.push_back(k.file);
    body += llvm::formatv("\n  // phase {0}: {1}\n  llamac::detail::beginPhase({0});\n", p, phase.comment);
    body += "  {\n";
    // The wrapper's parameters become locals bound to the phase's arguments.
    llvm::SmallVector<llvm::StringRef, 8> params;
    llvm::StringRef(k.params).split(params, ',');
    assert(params.size() == phase.args.size() && "one argument per wrapper parameter");
    for (size_t i = 0; i < params.size(); ++i) {
      llvm::StringRef decl = params[i].trim();
      llvm::StringRef type = decl.take_front(decl.find_last_of(" *") + 1).rtrim();
      body += llvm::formatv("    {0} = reinterpret_cast<{1}>({2});\n", decl, type, phase.args[i]);
    }
    body += llvm::formatv("    for (int b = blockIdx.x; b < {0}; b += gridDim.x) {{\n"
                          "      llamac::detail::setBlock(b, {1});\n",
                          phase.gridX * phase.gridY, phase.gridX);
    if (k.waits != Wait::InTemplate) body += "      llamac::detail::waitForPreviousKernel();\n";
    body += "      " + k.call + ";\n    }\n  }\n";
    body += llvm::formatv("  llamac::detail::endPhase({0});\n", p);
  }
  std::string code = llvm::formatv("extern \"C\" __global__ void __launch_bounds__({0}) {1}(char* arena_, const char* "
                                   "weights_, char* kv_, const int* token_, const int* pos_) {{\n{2}}\n",
                                   launch::kPersistentThreads, name, body)
                         .str();
  KernelWrapper w;
  w.file = "persistent.cuh";
  w.name = name;
  w.threads = unsigned(launch::kPersistentThreads);
  w.code = std::move(code);
  w.prelude = "#define LLAMAC_PERSISTENT 1\n";
  w.moreFiles = std::move(files);
  return w;
}

std::string programSource(llvm::ArrayRef<KernelWrapper> wrappers) {
  std::string source;
  for (const KernelWrapper &w : wrappers) source += w.prelude;
  std::set<std::string> included;
  for (const KernelWrapper &w : wrappers) {
    if (included.insert(w.file).second)
      source += "#include \"" + w.file + "\"\n";
    for (const std::string &file : w.moreFiles)
      if (included.insert(file).second) source += "#include \"" + file + "\"\n";
  }
  for (const KernelWrapper &w : wrappers)
    source += "\n" + w.code;
  return source;
}

std::vector<std::pair<std::string, std::string>> kernelHeaders() {
  std::vector<std::pair<std::string, std::string>> headers;
  for (llvm::StringRef name : codegen::kernelSourceFiles())
    headers.emplace_back(name.str(), codegen::kernelSource(name).str());
  return headers;
}

std::string selfContainedSource(llvm::ArrayRef<KernelWrapper> wrappers) {
  std::string source = "// Generated by llamac from the templates of codegen/kernels/.\n";
  std::set<std::string> inlined;
  // Depth-first, so each file's own includes come before it; `#pragma once`
  // becomes "inline each file once".
  std::function<void(llvm::StringRef)> inlineFile = [&](llvm::StringRef name) {
    if (!inlined.insert(name.str()).second) return;
    llvm::StringRef text = kernelSource(name);
    assert(!text.empty() && "a wrapper names a kernel file that is not embedded");
    source += "\n// ----- " + name.str() + "\n";
    while (!text.empty()) {
      auto [line, rest] = text.split('\n');
      text = rest;
      llvm::StringRef trimmed = line.trim();
      if (trimmed == "#pragma once") continue;
      if (trimmed.consume_front("#include \"") && trimmed.consume_back("\"")) {
        inlineFile(trimmed);
        continue;
      }
      source += line.str() + "\n";
    }
  };
  for (const KernelWrapper &w : wrappers) source += w.prelude;
  for (const KernelWrapper &w : wrappers) {
    inlineFile(w.file);
    for (const std::string &file : w.moreFiles) inlineFile(file);
  }
  source += "\n// ----- kernels\n";
  for (const KernelWrapper &w : wrappers) source += "\n" + w.code;
  return source;
}

} // namespace llamac::codegen
