#!/usr/bin/env python3
"""Summarizes a decode timeline: where each kernel's time goes under
programmatic dependent launch.

    LLAMAC_TIMELINE=/tmp/t.bin llamarun plan.pb --bench --steps 128
    bench/timeline.py /tmp/t.bin

llamarun (CudaEngine.cpp) recompiles every kernel to stamp, for each block,
%globaltimer when it reaches its dependency wait, when the wait returns and
when the block ends (common.cuh's KernelTimeline), and writes the records to
the file, the plan's kernel names to FILE.names. The records fill the buffer
from the first launch on (a step ends with the classifier's argmax_keys; a
chain's first step also holds its embedding and the host's round trip, which
the medians leave out); this script reads the launches of whole greedy
steps after the first few and prints, per kernel (the same kernel in every
layer together), the median over its launches of:

  step     its release to the next launch's release: what it adds to a step
  gap      the previous launch's last block end to this launch's first release
  work     this launch's first release to its last block end
  skew     its first to its last block's release
  lead     its first block at the wait, before its release: how early it was
           resident and loading
  late     blocks that reached the wait after the first release (they had no
           weights in flight while the kernel before ran), as a fraction
  mark     the slowest block's timelineMark (LLAMAC_NVRTC_OPTIONS=
           -DLLAMAC_TIMELINE_MARK=n picks which), after its release
"""
import argparse
import statistics
import sys

import numpy as np

RECORD = np.dtype([("grid", "<u8"), ("waits", "<u8"), ("released", "<u8"), ("exits", "<u8"),
                   ("kernel", "<u4"), ("block", "<u4"), ("sm", "<u4"), ("mark", "<u4")])


def mark_after_release(part):
    """The slowest block's timelineMark stamp after its own release (ns), or
    None without marks: the stamps keep the timer's low 32 bits."""
    marked = part[part["mark"] != 0]
    if len(marked) == 0:
        return None
    since = (marked["mark"].astype(np.int64) - (marked["released"].astype(np.int64) & 0xffffffff)) % (1 << 32)
    return int(since.max())


def launches(records, replay_gap_ns):
    """One dict per launch, in the order of its first release. A graph's
    launch keeps its %gridid when the graph is replayed: records of one grid
    id whose waits lie more than replay_gap_ns apart are different launches."""
    order = np.lexsort((records["waits"], records["grid"]))
    records = records[order]
    waits = records["waits"].astype(np.int64)
    bounds = np.flatnonzero((np.diff(records["grid"]) != 0) | (np.diff(waits) > replay_gap_ns)) + 1
    out = []
    for part in np.split(records, bounds):
        released = part["released"].astype(np.int64)
        first = int(released.min())
        out.append({
            "kernel": int(part["kernel"][0]),
            "blocks": len(part),
            "first_wait": int(part["waits"].astype(np.int64).min()),
            "first_release": first,
            "last_release": int(released.max()),
            "last_exit": int(part["exits"].astype(np.int64).max()),
            "late": float(np.mean(part["waits"].astype(np.int64) > first)),
            "mark": mark_after_release(part),
        })
    out.sort(key=lambda l: l["first_release"])
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file")
    parser.add_argument("--skip-steps", type=int, default=4, help="greedy steps left out at the start (warm-up)")
    parser.add_argument("--steps", type=int, default=64, help="greedy steps summarized")
    parser.add_argument("--replay-gap-us", type=float, default=1000,
                        help="blocks of one grid id this far apart belong to different replays of the graph")
    parser.add_argument("--csv", help="also write every launch of those steps to this file, a line each")
    args = parser.parse_args()

    names = open(args.file + ".names").read().split()
    records = np.fromfile(args.file, dtype=RECORD)
    if len(records) == 0:
        sys.exit(f"{args.file}: no records")
    runs = launches(records, int(args.replay_gap_us * 1000))
    # A step ends with the classifier's argmax_keys (a chained step's, or
    # @decode_greedy's and then advance_greedy); the next launch starts one.
    starts = []
    for i, l in enumerate(runs[:-1]):
        if names[l["kernel"]].startswith("argmax_keys"):
            follows = i + 2 if names[runs[i + 1]["kernel"]] == "advance_greedy" else i + 1
            if follows < len(runs):
                starts.append(follows)
    if len(starts) < args.skip_steps + 2:
        sys.exit(f"{args.file}: {len(starts)} steps recorded, too few")
    begin = starts[args.skip_steps]
    end = starts[min(args.skip_steps + args.steps, len(starts) - 1)]
    steps = min(args.steps, len(starts) - 1 - args.skip_steps)

    per_kernel = {}
    for i in range(begin, end):
        l, prev, nxt = runs[i], runs[i - 1], runs[i + 1]
        row = per_kernel.setdefault(l["kernel"], {k: [] for k in ("step", "gap", "work", "skew", "lead", "late", "blocks",
                                                                  "mark")})
        row["step"].append(nxt["first_release"] - l["first_release"])
        row["gap"].append(l["first_release"] - prev["last_exit"])
        row["work"].append(l["last_exit"] - l["first_release"])
        row["skew"].append(l["last_release"] - l["first_release"])
        row["lead"].append(l["first_release"] - l["first_wait"])
        row["late"].append(l["late"])
        row["blocks"].append(l["blocks"])
        if l["mark"] is not None:
            row["mark"].append(l["mark"])

    if args.csv:
        with open(args.csv, "w") as out:
            out.write("kernel,blocks,first_wait,first_release,last_release,last_exit,late\n")
            t0 = runs[begin]["first_release"]
            for l in runs[begin:end]:
                out.write(f"{names[l['kernel']]},{l['blocks']},{l['first_wait'] - t0},{l['first_release'] - t0},"
                          f"{l['last_release'] - t0},{l['last_exit'] - t0},{l['late']:.3f}\n")

    total = sum(statistics.median(r["step"]) * len(r["step"]) / steps for r in per_kernel.values())
    print(f"{steps} steps, {(end - begin) / steps:.0f} launches per step, {total / 1000:.1f} us per step "
          "(the sum of the medians; medians per launch in us; step: what the kernel adds per launch)")
    print(f"{'kernel':48} {'per step':>8} {'blocks':>6} {'step':>6} {'gap':>6} {'work':>6} {'skew':>6} "
          f"{'lead':>6} {'late':>5} {'mark':>6}")
    for kernel, row in sorted(per_kernel.items(), key=lambda kv: -sum(kv[1]["step"])):
        med = lambda k: statistics.median(row[k])
        print(f"{names[kernel]:48} {len(row['step']) / steps:8.0f} {med('blocks'):6.0f} {med('step') / 1000:6.2f} "
              f"{med('gap') / 1000:6.2f} {med('work') / 1000:6.2f} {med('skew') / 1000:6.2f} "
              f"{med('lead') / 1000:6.2f} {med('late'):5.2f} "
              + (f"{med('mark') / 1000:6.2f}" if row["mark"] else f"{'':>6}"))
    shares = {k: statistics.median(r["step"]) * len(r["step"]) / steps / 1000 for k, r in per_kernel.items()}
    print("us per step by kernel: " + ", ".join(f"{names[k]} {v:.1f}" for k, v in
                                                 sorted(shares.items(), key=lambda kv: -kv[1])))


if __name__ == "__main__":
    main()
