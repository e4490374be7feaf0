#!/usr/bin/env python3
"""Prints the llamarun --bench --json results given as files as one Markdown table.

Files are named as bench/bench.sh names them, shape.dtype.kvDTYPE[.flags].TOKENS.json;
the flags part (llamac options such as "persistent") is the "plan" column.
"""
import json
import os
import sys


def plan_flags(path):
    parts = os.path.basename(path).split(".")  # the shape may hold dots too
    kv = max(i for i, part in enumerate(parts) if part.startswith("kv"))
    return ".".join(parts[kv + 1:-2])


def main(paths):
    rows = []
    for path in paths:
        try:
            with open(path) as f:
                r = json.load(f)
        except (OSError, ValueError) as e:
            print(f"skipping {path}: {e}", file=sys.stderr)
            continue
        rows.append((r["model"], r["weight_dtype"], r.get("kv_dtype", "f32"), r["tokens"], r, plan_flags(path)))
    rows.sort(key=lambda row: (-row[4]["step_weight_bytes"], row[1], row[2], row[3], row[5]))
    print("| model | weights | KV cache | plan | tokens | tok/s | ms/token | GB/s | copy GB/s | % of floor |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for model, dtype, kv, tokens, r, flags in rows:
        print(f"| {model} | {dtype} | {kv} | {flags or 'default'} | {tokens} | {r['decode_tok_s']:,.0f} | {r['ms_per_token']:.4f} | "
              f"{r['achieved_gb_s']:,.0f} | {r['copy_bandwidth_gb_s']:,.0f} | {100 * r['fraction_of_floor']:.1f}% |")
    if rows:
        print(f"\n{rows[0][4]['device']}; median of {rows[0][4]['runs']} runs, after a one-token prompt.")


if __name__ == "__main__":
    main(sys.argv[1:])
