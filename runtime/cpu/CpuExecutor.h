//===- runtime/cpu/CpuExecutor.h - The reference interpreter ----*- C++ -*-===//
//
// Interprets any IR, before or after fusion, with plain C++ that follows
// llama2.c's run.c operation by operation (same accumulation order), so it
// is both the reference every pass and kernel is checked against and the
// device of people without a GPU.
//
// Every buffer is allocated in create(): values live in one arena (at the
// offsets memory planning chose, or packed one after another in a module
// that was not planned), the KV cache in another. step() allocates nothing.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "ir/IR.h"
#include "runtime/Weights.h"
#include "runtime/cpu/ThreadPool.h"

#include "llvm/ADT/DenseMap.h"

#include <memory>
#include <vector>

namespace llamac::runtime {

class CpuExecutor {
public:
  /// `threads` 0 means one per core. In a tensor parallel module, the
  /// executor is rank `rank`'s (`weights` holds that rank's shards).
  static llvm::Expected<std::unique_ptr<CpuExecutor>> create(const ir::Module &m, const WeightStore &weights,
                                                             unsigned threads = 0, unsigned rank = 0);

  /// Runs one decode step of `f` for `token` at position `pos`: writes this
  /// position's K and V, reads positions 0..pos. A module partitioned for
  /// several ranks runs through TensorParallelCpuExecutor instead.
  llvm::Error step(const ir::Function &f, int token, int pos);

  /// A step op by op, for TensorParallelCpuExecutor, which interleaves its
  /// ranks and carries out the collectives between them: beginStep, then
  /// runOp for every op that is not a collective. A collective run here acts
  /// as if this were the only rank.
  llvm::Error beginStep(int token, int pos);
  llvm::Error runOp(const ir::Op &op) { return run(op); }

  /// The function's first result after step(): logits, or the next token.
  llvm::ArrayRef<float> outputVector(const ir::Function &f) const;
  int outputToken(const ir::Function &f) const;

  /// Any value's contents after a step, for tests that compare ops.
  const float *data(const ir::Value *v) const;
  float *mutableData(const ir::Value *v);

  void clearKvCache();
  float *kCache(int64_t layer) { return kvCache_.data() + layer * layerStride_; }
  float *vCache(int64_t layer) { return kvCache_.data() + kvSpec_.layers * layerStride_ + layer * layerStride_; }

  uint64_t arenaBytes() const { return arena_.size() * sizeof(float); }
  uint64_t kvCacheBytes() const { return kvSpec_.totalBytes(); }

private:
  CpuExecutor(const ir::Module &m, const WeightStore &weights, unsigned threads, unsigned rank);
  llvm::Error layOut();
  llvm::Error run(const ir::Op &op);
#define OP(Kind, Mnemonic, NumOperands, NumResults, Effects, ...) void run##Kind(const ir::Op &op);
#include "ir/Ops.def"

  // Helpers shared by the matmul family.
  const float *input(const ir::Op &op); // operand 0, RMS-normalized when the op says so
  template <typename Row> void forEachRow(const ir::Value *w, const float *x, Row &&row);
  void rope(float *vec, int64_t n, int64_t headSize, double theta, int pos);
  void writeKv(int64_t layer, int pos, const float *k, const float *v);

  float *buf(const ir::Value *v) { return mutableData(v); }
  const char *weight(const ir::Value *w) const { return weights_.data(llvm::cast<ir::Weight>(w)); }

  const ir::Module &module_;
  const WeightStore &weights_;
  ThreadPool pool_;
  ir::KvCacheSpec kvSpec_;
  int64_t layerStride_ = 0;
  std::vector<float> arena_;
  llvm::DenseMap<const ir::Value *, size_t> offsets_; // in floats
  std::vector<float> kvCache_;
  std::vector<float> normalized_; // the RMS prologue's output
  std::vector<float> scores_;     // attention: [n_heads][seq_len]
  std::vector<float> rowScratch_; // per-row results of fused matmuls
  int token_ = 0;
  int pos_ = 0;
  unsigned rank_ = 0;
};

/// The packed (value, index) key of argmax.cuh: a larger key is a larger
/// value, then a lower index; NaN ranks below every number and -0 equals +0.
/// The CPU and the CUDA kernels reduce the same keys, so the distributed
/// argmax picks the token the single-device argmax does.
uint64_t argmaxKey(float value, uint32_t index);
inline int argmaxKeyIndex(uint64_t key) { return int(0xffffffffu - uint32_t(key & 0xffffffffu)); }

} // namespace llamac::runtime
