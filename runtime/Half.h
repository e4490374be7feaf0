//===- runtime/Half.h - f16 and bf16 conversions ----------------*- C++ -*-===//
//
// Round-to-nearest-even conversions between f32 and the 16-bit float types,
// bit-exact with CUDA's __float2half_rn / __float2bfloat16_rn, so the CPU
// executor computes on exactly the weights the GPU reads.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <cstdint>
#include <cstring>

namespace llamac {

inline uint32_t floatBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

inline float bitsToFloat(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline float bf16ToFloat(uint16_t h) { return bitsToFloat(uint32_t(h) << 16); }

inline uint16_t floatToBf16(float f) {
  uint32_t u = floatBits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fff; // the canonical NaN CUDA produces
  u += 0x7fffu + ((u >> 16) & 1);
  return uint16_t(u >> 16);
}

inline float halfToFloat(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  if (exp == 0x1f) return bitsToFloat(sign | 0x7f800000u | (mant << 13)); // inf, NaN
  if (exp == 0) {
    if (mant == 0) return bitsToFloat(sign);
    // Subnormal: value = mant * 2^-24.
    float v = float(mant) * (1.0f / 16777216.0f);
    return sign ? -v : v;
  }
  return bitsToFloat(sign | ((exp + 112) << 23) | (mant << 13));
}

inline uint16_t floatToHalf(float f) {
  uint32_t u = floatBits(f);
  uint16_t sign = uint16_t((u >> 16) & 0x8000);
  uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return 0x7fff;                 // the canonical NaN CUDA produces
  if (abs >= 0x477ff000u) return sign | 0x7c00;         // rounds to inf (>= 65520)
  if (abs < 0x38800000u) {                              // below the smallest normal: subnormal or zero
    // Add the value to 0.5 (2^-1) so the FPU rounds the mantissa to 2^-24 steps.
    float scaled = bitsToFloat(abs) + 0.5f;
    return sign | uint16_t(floatBits(scaled) - floatBits(0.5f));
  }
  uint32_t mantOdd = (abs >> 13) & 1;
  abs += 0xc8000fffu + mantOdd; // rebias exponent (-112 << 23) and round to nearest even
  return sign | uint16_t(abs >> 13);
}

} // namespace llamac
