#include "passes/Pass.h"

#include "ir/Printer.h"
#include "ir/Verifier.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/Support/Format.h"

#include <chrono>

namespace llamac::passes {

namespace {

bool listed(const std::vector<std::string> &names, llvm::StringRef name) {
  return llvm::is_contained(names, name.str());
}

void dump(llvm::raw_ostream &os, llvm::StringRef when, llvm::StringRef pass, const ir::Module &m, bool changed) {
  os << "// -----// IR Dump " << when << " " << pass;
  if (when == "After" && !changed) {
    os << " (unchanged) //----- //\n";
    return;
  }
  os << " //----- //\n";
  ir::print(m, os);
  os << "\n";
}

} // namespace

llvm::Error PassManager::run(ir::Module &m) {
  struct Timing {
    llvm::StringRef name;
    double seconds;
  };
  std::vector<Timing> timings;
  auto error = [](const llvm::Twine &msg) {
    return llvm::createStringError(llvm::inconvertibleErrorCode(), msg);
  };
  for (const auto &pass : passes_) {
    llvm::StringRef name = pass->name();
    if (listed(inst_.printBefore, name)) dump(*inst_.out, "Before", name, m, true);
    auto start = std::chrono::steady_clock::now();
    llvm::Expected<bool> changed = pass->run(m);
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (!changed) return error("pass '" + name + "' failed: " + llvm::toString(changed.takeError()));
    timings.push_back({name, seconds});
    if (inst_.verifyEach)
      if (auto e = ir::verify(m))
        return error("the IR after pass '" + name + "' is invalid (a compiler bug): " + llvm::toString(std::move(e)));
    if (inst_.printAfterAll || listed(inst_.printAfter, name)) dump(*inst_.out, "After", name, m, *changed);
  }
  if (inst_.timePasses) {
    double total = 0;
    for (const Timing &t : timings) total += t.seconds;
    llvm::raw_ostream &os = *inst_.out;
    os << "===" << std::string(70, '-') << "===\n";
    os << "                      ... Pass execution timing report ...\n";
    os << "===" << std::string(70, '-') << "===\n";
    os << llvm::format("  Total Execution Time: %.4f seconds\n\n", total);
    os << "   ---Wall Time---  --- Name ---\n";
    for (const Timing &t : timings)
      os << llvm::format("   %.4f (%5.1f%%)  ", t.seconds, total > 0 ? 100 * t.seconds / total : 0.0) << t.name
         << "\n";
    os << llvm::format("   %.4f (100.0%%)  Total\n", total);
  }
  return llvm::Error::success();
}

} // namespace llamac::passes
