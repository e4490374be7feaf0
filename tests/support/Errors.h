//===- tests/support/Errors.h - How far two logit vectors are apart -------===//
#pragma once

#include "llvm/ADT/ArrayRef.h"

#include <algorithm>
#include <cmath>

namespace llamac::test {

/// max |a - b| / max |b| over a step's logits: the relative error measure of
/// every pass test.
inline double relativeError(llvm::ArrayRef<float> a, llvm::ArrayRef<float> b) {
  double maxDiff = 0, maxRef = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    maxDiff = std::max(maxDiff, std::fabs(double(a[i]) - double(b[i])));
    maxRef = std::max(maxRef, std::fabs(double(b[i])));
  }
  return maxRef > 0 ? maxDiff / maxRef : maxDiff;
}

/// ||a - b|| / ||b|| (Euclidean), the measure of METHOD.md for comparing a
/// lower-precision computation with its f32 reference: one outlier logit
/// does not dominate it the way it dominates relativeError.
inline double l2RelativeError(llvm::ArrayRef<float> a, llvm::ArrayRef<float> b) {
  double diff = 0, ref = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    diff += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    ref += double(b[i]) * b[i];
  }
  return ref > 0 ? std::sqrt(diff / ref) : std::sqrt(diff);
}

} // namespace llamac::test
