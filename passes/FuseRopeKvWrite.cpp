#include "passes/FuseRopeKvWrite.h"

#include "ir/Builder.h"

#include "llvm/ADT/STLExtras.h"

#include <optional>

namespace llamac::passes {

using namespace ir;

namespace {

/// The op of `kind` defining `v`, or null.
Op *definedBy(const Value *v, OpKind kind) {
  Op *def = v->definingOp();
  return def && def->kind() == kind ? def : nullptr;
}

/// Whether `user` is the only reader of `v` and `v` is not returned.
bool onlyUser(const Function &f, const Value *v, const Op *user) {
  auto users = f.users(v);
  return users.size() == 1 && users[0] == user && !f.isReturned(v);
}

bool isSlice(const Op *op, int64_t offset, int64_t size) {
  return op && op->kind() == OpKind::Slice && op->intAttr(AttrKey::offset) == offset &&
         op->intAttr(AttrKey::size) == size;
}

/// The ops of one match, in the order they are erased (users first).
struct Match {
  Op *kvWrite, *ropeK, *ropeQ, *sliceQ, *sliceK, *sliceV, *qkv;
};

std::optional<Match> match(const Function &f, Op *kvWrite) {
  Value *pos = kvWrite->operand(2);
  // Step 1: walk up from the kv_write.
  Op *ropeK = definedBy(kvWrite->operand(0), OpKind::Rope);
  Op *sliceV = definedBy(kvWrite->operand(1), OpKind::Slice);
  if (!ropeK || !sliceV || ropeK->operand(1) != pos) return std::nullopt;
  Op *sliceK = definedBy(ropeK->operand(0), OpKind::Slice);
  if (!sliceK || sliceK->operand(0) != sliceV->operand(0)) return std::nullopt;
  Op *qkv = definedBy(sliceK->operand(0), OpKind::MatMulQkv);
  if (!qkv) return std::nullopt;
  int64_t nq = qkv->operand(1)->type().shape[0], nkv = qkv->operand(2)->type().shape[0];
  if (!isSlice(sliceK, nq, nkv) || !isSlice(sliceV, nq + nkv, nkv)) return std::nullopt;
  auto qkvUsers = f.users(qkv->result());
  if (qkvUsers.size() != 3 || f.isReturned(qkv->result())) return std::nullopt;
  auto sliceQ = llvm::find_if(qkvUsers, [&](Op *op) { return isSlice(op, 0, nq); });
  if (sliceQ == qkvUsers.end()) return std::nullopt;
  auto qUsers = f.users((*sliceQ)->result());
  if (qUsers.size() != 1) return std::nullopt;
  Op *ropeQ = qUsers[0];
  if (ropeQ->kind() != OpKind::Rope || ropeQ->operand(1) != pos ||
      ropeQ->intAttr(AttrKey::head_size) != ropeK->intAttr(AttrKey::head_size) ||
      ropeQ->floatAttr(AttrKey::theta) != ropeK->floatAttr(AttrKey::theta))
    return std::nullopt;
  // Step 2: the intermediates have no other readers.
  if (!onlyUser(f, (*sliceQ)->result(), ropeQ) || !onlyUser(f, sliceK->result(), ropeK) ||
      !onlyUser(f, ropeK->result(), kvWrite) || !onlyUser(f, sliceV->result(), kvWrite))
    return std::nullopt;
  // Step 3: %qr is first needed after the kv_write.
  size_t kvIndex = f.indexOf(kvWrite);
  for (Op *user : f.users(ropeQ->result()))
    if (f.indexOf(user) < kvIndex) return std::nullopt;
  return Match{kvWrite, ropeK, ropeQ, *sliceQ, sliceK, sliceV, qkv};
}

class FuseRopeKvWrite : public Pass {
public:
  llvm::StringRef name() const override { return "fuse-rope-kv-write"; }

  llvm::Expected<bool> run(Module &m) override {
    bool changed = false;
    for (const auto &f : m.functions()) {
      // Collected first: the rewrite erases ops from the list being walked.
      std::vector<Op *> kvWrites;
      for (const auto &op : f->ops())
        if (op->kind() == OpKind::KvWrite) kvWrites.push_back(op.get());
      for (Op *kvWrite : kvWrites) {
        std::optional<Match> found = match(*f, kvWrite);
        if (!found) continue;
        // Step 3: the fused op takes the kv_write's place, with its layer, the
        // ropes' head_size and theta, and the matmul's rms_eps.
        const Op &qkv = *found->qkv;
        llvm::SmallVector<Attr, 4> attrs = {kvWrite->attrs().begin(), kvWrite->attrs().end()};
        llvm::append_range(attrs, found->ropeK->attrs());
        if (qkv.hasAttr(AttrKey::rms_eps))
          attrs.push_back(Attr::real(AttrKey::rms_eps, qkv.floatAttr(AttrKey::rms_eps)));
        auto fused = Builder(*f, kvWrite)
                         .value(OpKind::MatMulQkvRopeKv,
                                {qkv.operand(0), qkv.operand(1), qkv.operand(2), qkv.operand(3), kvWrite->operand(2)},
                                attrs);
        if (!fused) return fused.takeError();
        // Step 4.
        f->replaceAllUsesWith(found->ropeQ->result(), *fused);
        for (Op *op : {found->kvWrite, found->ropeK, found->ropeQ, found->sliceQ, found->sliceK, found->sliceV,
                       found->qkv})
          f->erase(op);
        changed = true;
      }
    }
    return changed;
  }
};

} // namespace

std::unique_ptr<Pass> createFuseRopeKvWritePass() { return std::make_unique<FuseRopeKvWrite>(); }

} // namespace llamac::passes
