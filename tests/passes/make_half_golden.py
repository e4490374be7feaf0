#!/usr/bin/env python3
"""Writes HalfGolden.inc: the expected f32 -> f16 / bf16 conversions that
ConvertWeightsTest.cpp checks runtime/Half.h against.

f16 comes from numpy (float32 -> float16 is round-to-nearest-even, with
subnormals and overflow to inf). bf16 comes from an exact reference below
that compares the two bf16 neighbours of x in float64, which is exact for
float32 inputs; it shares no code with the bit trick in runtime/Half.h.
NaN inputs are left out: Half.h keeps NaNs NaN but does not promise a
payload (ConvertWeightsTest checks NaN separately).

Run from the repository root: python3 tests/passes/make_half_golden.py
"""
import os
import random
import struct

import numpy as np

SWEEP_SEED = 0x2545F491
SWEEP_COUNT = 1 << 18
MASK32 = 0xFFFFFFFF
MASK64 = 0xFFFFFFFFFFFFFFFF


def f32_value(bits):
    return struct.unpack("<f", struct.pack("<I", bits))[0]


def is_nan(bits):
    return (bits & 0x7FFFFFFF) > 0x7F800000


def to_f16(bits):
    with np.errstate(over="ignore"):  # overflow to inf is the expected result
        return int(np.array([bits], dtype=np.uint32).view(np.float32).astype(np.float16).view(np.uint16)[0])


def to_bf16(bits):
    sign = bits & 0x80000000
    mag = bits & 0x7FFFFFFF
    if mag == 0x7F800000:
        return (sign | mag) >> 16
    x = f32_value(mag)
    lo = mag >> 16
    hi = lo + 1
    v_lo = f32_value(lo << 16)
    # Round as if the exponent were unbounded: the neighbour above the largest
    # finite bf16 is 2^128, and rounding to it gives inf.
    v_hi = 2.0 ** 128 if hi == 0x7F80 else f32_value(hi << 16)
    d_lo, d_hi = x - v_lo, v_hi - x
    pick = lo if d_lo < d_hi or (d_lo == d_hi and lo % 2 == 0) else hi
    return (sign >> 16) | pick


def sweep_inputs():
    """The sweep ConvertWeightsTest.cpp regenerates (keep the two in sync):
    xorshift32 from SWEEP_SEED, and for input i of the stream u:
      i % 4 == 0: u;
      i % 4 == 1: u with its exponent moved into [100, 143] (f16's range,
                  subnormals and overflow included) and its low 13 bits set
                  to 0x1000, an exact f16 tie;
      i % 4 == 2: u with its low 16 bits set to 0x8000, an exact bf16 tie;
      i % 4 == 3: u with its exponent moved into [100, 143]."""
    state = SWEEP_SEED
    out = []
    for i in range(SWEEP_COUNT):
        state ^= (state << 13) & MASK32
        state ^= state >> 17
        state ^= (state << 5) & MASK32
        u = state
        in_f16_range = (u & 0x807FFFFF) | ((100 + ((u >> 23) & 0xFF) % 44) << 23)
        variant = i % 4
        if variant == 0:
            x = u
        elif variant == 1:
            x = (in_f16_range & ~0x1FFF) | 0x1000
        elif variant == 2:
            x = (u & ~0xFFFF) | 0x8000
        else:
            x = in_f16_range
        out.append(x)
    return out


def checksum(values):
    """sum over i of (i + 1) * values[i], mod 2^64: any single wrong value changes it."""
    total = 0
    for i, v in enumerate(values):
        total = (total + (i + 1) * v) & MASK64
    return total


def main():
    named = [
        0x00000000, 0x80000000, 0x3F800000, 0xBF800000, 0x3F000000, 0x7F800000, 0xFF800000,
        0x477FE000,  # 65504, the largest f16
        0x477FEFFF,  # just below 65520: rounds down to 65504
        0x477FF000,  # 65520: ties to even, which is inf
        0x47C35000,  # 1e5
        0x33800000,  # 2^-24, the smallest f16 subnormal
        0x33000000,  # 2^-25: tie between 0 and 2^-24, to even 0
        0x33000001,  # just above: 2^-24
        0x33C00000,  # 1.5 * 2^-24: tie, to even 2 * 2^-24
        0x34200000,  # 2.5 * 2^-24: tie, to even 2 * 2^-24
        0x38800000,  # 2^-14, the smallest f16 normal
        0x387FFFFF,  # just below: rounds up to the smallest normal
        0x387FC000,  # the largest f16 subnormal
        0x3F801000,  # 1 + 2^-11: f16 tie, to even 1
        0x3F803000,  # 1 + 3 * 2^-11: f16 tie, to even 1 + 2^-9
        0x3F808000,  # 1 + 2^-8: bf16 tie, to even 1
        0x3F818000,  # bf16 tie, to even 0x3f82
        0x3F80FFFF, 0x3F807FFF,
        0x7F7FFFFF,  # the largest float: bf16 rounds it to inf
        0x7F7F7FFF,  # rounds down to the largest bf16
        0x7F7F8000,  # tie with odd below: inf
        0x00000001, 0x00008000, 0x00018000, 0x80010000, 0x007FFFFF,
        0x3EAAAAAB,  # 1/3
        0x40490FDB,  # pi
        0x322BCC77,  # 1e-8
        0xC61C4000,  # -10000
    ]
    rng = random.Random(1)
    for _ in range(64):
        exponent = rng.randrange(100, 144)
        named.append((rng.getrandbits(1) << 31) | (exponent << 23) | rng.getrandbits(23))
    assert not any(is_nan(b) for b in named)

    sweep = sweep_inputs()
    # NaNs contribute 0 to the checksum on both sides.
    f16_sum = checksum(0 if is_nan(x) else to_f16(x) for x in sweep)
    bf16_sum = checksum(0 if is_nan(x) else to_bf16(x) for x in sweep)
    halves = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    half_to_float = halves.view(np.float16).astype(np.float32).view(np.uint32)
    h2f_sum = checksum(int(v) for v in half_to_float)

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "HalfGolden.inc")
    with open(path, "w") as f:
        f.write("// Generated by tests/passes/make_half_golden.py (numpy %s); do not edit.\n" % np.__version__)
        f.write("// {f32 bits, f16 bits (numpy), bf16 bits (exact reference)}\n")
        f.write("constexpr HalfCase kHalfCases[] = {\n")
        for b in named:
            f.write("    {0x%08x, 0x%04x, 0x%04x},\n" % (b, to_f16(b), to_bf16(b)))
        f.write("};\n")
        f.write("constexpr uint32_t kSweepSeed = 0x%08x;\n" % SWEEP_SEED)
        f.write("constexpr uint32_t kSweepCount = %d;\n" % SWEEP_COUNT)
        f.write("constexpr uint64_t kSweepF16Checksum = 0x%016xull;\n" % f16_sum)
        f.write("constexpr uint64_t kSweepBf16Checksum = 0x%016xull;\n" % bf16_sum)
        f.write("constexpr uint64_t kHalfToFloatChecksum = 0x%016xull;\n" % h2f_sum)


if __name__ == "__main__":
    main()
