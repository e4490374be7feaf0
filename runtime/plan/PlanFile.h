//===- runtime/plan/PlanFile.h - Writing and reading plan.pb ----*- C++ -*-===//
//
// A plan is two files side by side: `plan.pb`, a llamac.plan.Plan message
// (runtime/plan/plan.proto), and its weights sidecar `plan.pb.weights`, a flat
// file of aligned tensors whose size, xxh64 checksum and tensor table the plan
// records in `Plan.weights`.
//
// Writing is atomic: both files are written to temporary files in the target
// folder and renamed into place together by writePlan, so a failed or
// interrupted compile never leaves a half-written plan, a plan without its
// sidecar, or a temporary file behind.
//
//   auto weights = WeightsWriter::create("out/plan.pb.weights");
//   weights->append("tok_embeddings", "f16", {vocab, dim}, bytes);   // ...
//   weights->finish(*plan.mutable_weights());
//   writePlan(plan, "out/plan.pb", *weights);
//
// Reading validates everything a damaged, truncated or foreign file could get
// wrong and reports it as an llvm::Error naming the file; it never crashes.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/plan/plan.pb.h"

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/Support/Error.h"
#include "llvm/Support/MemoryBuffer.h"

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace llamac::runtime {

/// The plan format this build writes and reads (Plan.format_version).
constexpr uint32_t kPlanFormatVersion = 1;
/// The format of tensor parallel plans (Plan.tensor_parallel > 0): version 1
/// plus collectives, the RANK argument and one sidecar per rank. Readers of
/// version 1 only would misread them; this build reads both.
constexpr uint32_t kPlanFormatVersionTensorParallel = 2;
/// Every tensor in the weights sidecar starts at a multiple of this.
constexpr uint32_t kWeightsAlignment = 256;

/// Streams weight tensors into the sidecar: each tensor aligned to
/// kWeightsAlignment (zero padding), the xxh64 checksum computed while writing
/// so the file is never read back. The data goes to a temporary file next to
/// `finalPath`; only writePlan renames it into place. Destroying a writer that
/// was not committed removes its temporary file.
class WeightsWriter {
public:
  static llvm::Expected<WeightsWriter> create(llvm::StringRef finalPath);

  WeightsWriter(WeightsWriter &&other) noexcept;
  WeightsWriter &operator=(WeightsWriter &&other) noexcept;
  WeightsWriter(const WeightsWriter &) = delete;
  WeightsWriter &operator=(const WeightsWriter &) = delete;
  ~WeightsWriter();

  /// Appends one tensor and returns its offset in the sidecar. `dtype` is an
  /// IR element type ("f32", "f16", "bf16", "i8", "i32"); `bytes` must hold
  /// exactly the shape's elements. A rejected tensor writes nothing; a failed
  /// write makes the writer unusable (every later call fails).
  llvm::Expected<uint64_t> append(llvm::StringRef name, llvm::StringRef dtype,
                                  llvm::ArrayRef<int64_t> shape, llvm::ArrayRef<char> bytes);

  /// Flushes the sidecar to disk and fills `out` (file_name relative to the
  /// plan's folder, bytes, xxh64, alignment, tensors). No append after this.
  llvm::Error finish(llamac::plan::WeightsFile &out);

  /// Where the sidecar will be once committed.
  llvm::StringRef finalPath() const { return finalPath_; }

private:
  enum class State { Writing, Finished, Committed, Failed };
  struct HashState;

  WeightsWriter(std::string finalPath, std::string tempPath, int fd);
  llvm::Error writeAll(const char *data, size_t size);
  /// Renames the finished temporary file to finalPath.
  llvm::Error commit();
  /// Removes the temporary file and makes the writer unusable (not after commit).
  void discard();
  void closeAndRemoveTemp();

  friend llvm::Error writePlan(const llamac::plan::Plan &, llvm::StringRef, WeightsWriter &,
                               llvm::MutableArrayRef<WeightsWriter>);

  std::string finalPath_;
  std::string tempPath_;
  int fd_ = -1;
  State state_ = State::Writing;
  std::unique_ptr<HashState> hash_;
  uint64_t size_ = 0;
  uint64_t digest_ = 0;
  llamac::plan::WeightsFile table_;
  llvm::StringSet<> names_;
};

/// Writes `plan` to `path` atomically (temporary file in the same folder,
/// fsync, rename) and commits `weights` together with it: the sidecar must be
/// finished, belong to `plan` (same file name, size and checksum) and sit in
/// the plan's folder. On any failure neither the plan nor the sidecar is left
/// behind, nor any temporary file. A tensor parallel plan has a sidecar per
/// rank: `weights` is rank 0's, `rankWeights` those of ranks 1..N-1, described
/// by plan.rank_weights in the same order; all are committed together.
llvm::Error writePlan(const llamac::plan::Plan &plan, llvm::StringRef path, WeightsWriter &weights,
                      llvm::MutableArrayRef<WeightsWriter> rankWeights = {});

/// A plan read from disk, with its weights sidecar memory-mapped.
struct LoadedPlan {
  llamac::plan::Plan plan;
  /// The whole sidecar, memory-mapped (it may be many GB: never copy it).
  /// In a tensor parallel plan, rank 0's.
  std::unique_ptr<llvm::MemoryBuffer> weights;
  /// A tensor parallel plan's sidecars of ranks 1..N-1, memory-mapped.
  std::vector<std::unique_ptr<llvm::MemoryBuffer>> rankWeights;

  /// Ranks the plan runs on: plan.tensor_parallel, or 1 when not partitioned.
  unsigned ranks() const { return std::max(1u, plan.tensor_parallel()); }
  /// Rank `rank`'s weights sidecar, and its name in the plan.
  llvm::StringRef weightsOf(unsigned rank) const {
    return rank == 0 ? weights->getBuffer() : rankWeights[rank - 1]->getBuffer();
  }
  const llamac::plan::WeightsFile &weightsFileOf(unsigned rank) const {
    return rank == 0 ? plan.weights() : plan.rank_weights(int(rank) - 1);
  }

  /// The bytes of one tensor of plan.weights() (checked by readPlan to lie
  /// inside the sidecar).
  const char *tensorData(const llamac::plan::WeightsFile::Tensor &tensor) const;
};

enum class VerifyWeights { Yes, No };

/// Reads and validates `path` and its sidecar: the format version, the
/// sidecar's size, every tensor entry (inside the file, aligned, shape
/// matching bytes), launch kernel indices and region offsets, and, unless
/// `verify` is No, the sidecar's checksum. A tensor parallel plan's sidecars
/// are checked likewise, each against rank 0's tensor table. Every error names
/// the file at fault.
llvm::Expected<LoadedPlan> readPlan(llvm::StringRef path, VerifyWeights verify = VerifyWeights::Yes);

/// XXH64 (seed 0) of `data`: the checksum recorded in WeightsFile.xxh64.
uint64_t weightsChecksum(llvm::ArrayRef<char> data);
/// Checks `data` against `expected`; the error names `fileName`.
llvm::Error verifyWeightsChecksum(llvm::ArrayRef<char> data, uint64_t expected, llvm::StringRef fileName);

/// A few lines for people: producer, model config, dtypes, tokenizer, kernels
/// and their architectures, functions, arena, KV cache and weights sizes.
/// The header of `llamac dump --summary`.
std::string describePlan(const llamac::plan::Plan &plan);

} // namespace llamac::runtime
