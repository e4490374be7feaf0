#!/usr/bin/env python3
"""Prints the llamarun --bench --json results given as files as one Markdown table."""
import json
import sys


def main(paths):
    rows = []
    for path in paths:
        try:
            with open(path) as f:
                r = json.load(f)
        except (OSError, ValueError) as e:
            print(f"skipping {path}: {e}", file=sys.stderr)
            continue
        rows.append((r["model"], r["weight_dtype"], r.get("kv_dtype", "f32"), r["tokens"], r))
    rows.sort(key=lambda row: (-row[4]["step_weight_bytes"], row[1], row[2], row[3]))
    print("| model | weights | KV cache | tokens | tok/s | ms/token | GB/s | copy GB/s | % of floor |")
    print("|---|---|---|---|---|---|---|---|---|")
    for model, dtype, kv, tokens, r in rows:
        print(f"| {model} | {dtype} | {kv} | {tokens} | {r['decode_tok_s']:,.0f} | {r['ms_per_token']:.4f} | "
              f"{r['achieved_gb_s']:,.0f} | {r['copy_bandwidth_gb_s']:,.0f} | {100 * r['fraction_of_floor']:.1f}% |")
    if rows:
        print(f"\n{rows[0][4]['device']}; median of {rows[0][4]['runs']} runs, after a one-token prompt.")


if __name__ == "__main__":
    main(sys.argv[1:])
