#include "tools/PlanDump.h"

#include "ir/Parser.h"
#include "ir/Printer.h"
#include "runtime/plan/PlanFile.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/FormatVariadic.h"

#include <map>

namespace llamac::tools {

using namespace ir;

namespace {

/// The layer an op belongs to: its `layer` attribute, or the layer of the
/// weights it reads (`l3.wq`); -1 when it names neither.
int64_t layerOf(const Op &op) {
  if (op.hasAttr(AttrKey::layer)) return op.intAttr(AttrKey::layer);
  for (const Value *v : op.operands()) {
    if (!v->isWeight()) continue;
    llvm::StringRef name = v->name();
    int64_t layer;
    if (name.consume_front("l") && !name.take_until([](char c) { return c == '.'; }).getAsInteger(10, layer))
      return layer;
  }
  return -1;
}

/// Groups a function's ops into before the layers, each layer, after them.
/// Ops that name no layer join the layer of the op before them, until an op
/// reads a weight of no layer after the layers began (the final norm and
/// classifier).
struct LayerGroups {
  std::vector<const Op *> before, after;
  std::map<int64_t, std::vector<const Op *>> layers;
};

LayerGroups groupByLayer(const Function &f) {
  LayerGroups g;
  int64_t current = -1;
  bool pastLayers = false;
  for (const auto &op : f.ops()) {
    int64_t layer = layerOf(*op);
    bool readsGlobalWeight =
        llvm::any_of(op->operands(), [](const Value *v) { return v->isWeight(); }) && layer < 0;
    if (layer >= 0) current = layer;
    else if (readsGlobalWeight && current >= 0) pastLayers = true;
    if (pastLayers) g.after.push_back(op.get());
    else if (current < 0) g.before.push_back(op.get());
    else g.layers[current].push_back(op.get());
  }
  return g;
}

std::string mnemonics(const std::vector<const Op *> &ops) {
  std::string s;
  for (const Op *op : ops) s += (s.empty() ? "" : ", ") + op->mnemonic().str();
  return s;
}

void printSummary(const plan::Plan &p, const Module &m, llvm::raw_ostream &os) {
  os << runtime::describePlan(p);
  for (const auto &f : m.functions()) {
    LayerGroups g = groupByLayer(*f);
    size_t maxPerLayer = 0;
    for (auto &[layer, ops] : g.layers) maxPerLayer = std::max(maxPerLayer, ops.size());
    os << llvm::formatv("@{0}: {1} ops = {2} before the layers + {3} layers (at most {4} ops each) + {5} after\n",
                        f->name(), f->size(), g.before.size(), g.layers.size(), maxPerLayer, g.after.size());
    os << "  before:    " << mnemonics(g.before) << "\n";
    for (auto &[layer, ops] : g.layers)
      os << llvm::formatv("  layer {0,-3} {1} ops: {2}\n", layer, ops.size(), mnemonics(ops));
    os << "  after:     " << mnemonics(g.after) << "\n";
  }
}

void printMemory(const plan::Plan &p, llvm::raw_ostream &os) {
  const plan::MemoryPlan &mem = p.memory();
  os << llvm::formatv("arena {0} bytes (without reuse: {1}), KV cache {2} bytes, weights {3} bytes\n",
                      mem.arena_bytes(), mem.arena_bytes_unplanned(), mem.kv_cache_bytes(), mem.weight_bytes());
  os << llvm::formatv("{0,-16} {1,-7} {2,12} {3,12} {4,-12} {5}\n", "function", "value", "offset", "bytes",
                      "live ops", "type");
  for (const auto &b : mem.buffers())
    os << llvm::formatv("{0,-16} {1,-7} {2,12} {3,12} {4,-12} {5}\n", b.function(), b.value(), b.offset(), b.bytes(),
                        llvm::formatv("[{0}, {1}]", b.first_op(), b.last_op()).str(), b.type());
}

void printDot(const Module &m, llvm::raw_ostream &os) {
  os << "digraph \"" << m.name() << "\" {\n  node [shape=box, fontname=\"monospace\"];\n";
  for (const auto &f : m.functions()) {
    ValueNumbering names(*f);
    os << "  subgraph \"cluster_" << f->name() << "\" {\n    label=\"@" << f->name() << "\";\n";
    auto id = [&](const Op *op) { return f->name() + "_" + std::to_string(f->indexOf(op)); };
    for (const auto &op : f->ops()) {
      std::string label = (op->result() ? names.name(op->result()) + " = " : std::string()) + op->mnemonic().str();
      for (const Value *v : op->operands())
        if (v->isWeight()) label += "\\n@" + v->name();
      os << "    \"" << id(op.get()) << "\" [label=\"" << label << "\"" << (op->isPure() ? "" : ", style=bold")
         << "];\n";
      for (const Value *v : op->operands())
        if (const Op *def = v->definingOp()) os << "    \"" << id(def) << "\" -> \"" << id(op.get()) << "\";\n";
    }
    os << "  }\n";
  }
  os << "}\n";
}

} // namespace

llvm::Error dumpPlan(const plan::Plan &p, llvm::StringRef planName, DumpKind kind, llvm::raw_ostream &os) {
  if (kind == DumpKind::Ir) {
    os << p.ir();
    return llvm::Error::success();
  }
  if (kind == DumpKind::Memory) {
    printMemory(p, os);
    return llvm::Error::success();
  }
  auto m = parseModule(p.ir(), (planName + " (ir)").str());
  if (!m) return m.takeError();
  if (kind == DumpKind::Dot) printDot(**m, os);
  else printSummary(p, **m, os);
  return llvm::Error::success();
}

} // namespace llamac::tools
