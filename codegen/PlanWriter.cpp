#include "codegen/PlanWriter.h"

#include "runtime/Weights.h"

#include "llvm/Support/Format.h"

namespace llamac::codegen {

using namespace ir;

llvm::Error streamWeights(Module &m, llvm::StringRef source, llvm::StringRef sourceName, runtime::WeightsWriter &out,
                          llvm::raw_ostream *progress) {
  return streamWeights(m, source, sourceName, llvm::MutableArrayRef<runtime::WeightsWriter>(out), progress);
}

llvm::Error streamWeights(Module &m, llvm::StringRef source, llvm::StringRef sourceName,
                          llvm::MutableArrayRef<runtime::WeightsWriter> ranks, llvm::raw_ostream *progress) {
  m.removeUnusedWeights();
  if (auto e = runtime::checkWeightsFit(m, source.size(), sourceName)) return e;
  // Only weights that functions read go to the sidecar; the ones they are
  // computed from (a gain folded into a matrix) are dropped afterwards.
  std::vector<Weight *> used;
  uint64_t total = 0;
  for (const auto &w : m.weights()) {
    bool read = false;
    for (const auto &f : m.functions())
      for (const auto &op : f->ops())
        read |= llvm::is_contained(op->operands(), w.get());
    if (!read) continue;
    used.push_back(w.get());
    total += w->type().byteSize() * ranks.size();
  }
  bool report = progress && total >= (256u << 20);
  uint64_t written = 0, nextReport = total / 10;
  std::vector<char> bytes;
  std::vector<std::pair<Weight *, uint64_t>> offsets;
  for (Weight *w : used) {
    for (unsigned rank = 0; rank < ranks.size(); ++rank) {
      if (auto e = runtime::materializeWeight(*w, source, bytes, rank)) return e;
      auto offset = ranks[rank].append(w->name(), toString(w->type().dtype), w->type().shape, bytes);
      if (!offset) return offset.takeError();
      if (rank == 0) offsets.emplace_back(w, *offset);
      else assert(*offset == offsets.back().second && "every rank's sidecar has the same layout");
      written += bytes.size();
      if (report && written >= nextReport) {
        *progress << llvm::format("llamac: weights %6.0f / %.0f MB\n", written / 1e6, total / 1e6);
        nextReport += total / 10;
      }
    }
  }
  // Re-point only after every weight was computed: a derived weight reads its
  // operands from the checkpoint.
  for (auto [w, offset] : offsets) w->setFileOffset(offset);
  m.removeUnusedWeights();
  return llvm::Error::success();
}

void describeMemory(const Module &m, uint64_t unplannedBytes, plan::MemoryPlan &out) {
  out.set_arena_bytes(m.arenaBytes() < 0 ? 0 : m.arenaBytes());
  out.set_arena_bytes_unplanned(unplannedBytes);
  out.set_kv_cache_bytes(m.kvCache().totalBytes());
  uint64_t weightBytes = 0;
  for (const auto &w : m.weights()) weightBytes += w->type().byteSize();
  out.set_weight_bytes(weightBytes);
  for (const auto &f : m.functions()) {
    ValueNumbering names(*f);
    const auto &ops = f->ops();
    for (size_t i = 0; i < ops.size(); ++i) {
      const Value *r = ops[i]->result();
      if (!r) continue;
      size_t last = i;
      for (size_t j = i + 1; j < ops.size(); ++j)
        if (llvm::is_contained(ops[j]->operands(), r)) last = j;
      if (f->isReturned(r)) last = ops.size();
      auto *b = out.add_buffers();
      b->set_value(names.name(r));
      b->set_function(f->name());
      b->set_offset(r->arenaOffset() < 0 ? 0 : r->arenaOffset());
      b->set_bytes(r->type().byteSize());
      b->set_first_op(i);
      b->set_last_op(last);
      b->set_type(r->type().str());
    }
  }
}

} // namespace llamac::codegen
