#!/usr/bin/env bash
# Times one plan under several environments, on a GPU machine: one line per
# variant with ms/token and the fraction of the floor (llamarun --bench,
# median of RUNS runs of TOKENS tokens). For timing experiments such as
# leaving kernels out of the graph or recompiling them with other options
# (bench/NOTES.md, session 5); the tokens of such runs are wrong.
#
#   bench/variants.sh plan.pb "" LLAMAC_SKIP_KERNELS=attention \
#       "LLAMAC_NVRTC_OPTIONS=-DLLAMAC_EXPERIMENT_LATE_TRIGGER=1" LLAMAC_GRID_STRIDE_BLOCKS_PER_SM=2
#
# A variant is a space-separated list of VAR=value ("" for none). LLAMAC
# (tools folder, default .bundle/bin), TOKENS (128), RUNS (5).
set -uo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: bench/variants.sh plan.pb VARIANT..." >&2; exit 2; }
plan=$1
shift
BIN=${LLAMAC:-$PWD/.bundle/bin}
export LD_LIBRARY_PATH=$PWD/.bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
for variant in "$@"; do
  read -ra assignments <<< "$variant"
  result=$(env "${assignments[@]}" "$BIN/llamarun" "$plan" --device cuda --bench --bench-tokens "${TOKENS:-128}" \
             --bench-runs "${RUNS:-5}" --json --quiet |
           python3 -c 'import json, sys; r = json.load(sys.stdin); print("%.4f ms/token, %.1f%% of the floor" % (r["ms_per_token"], 100 * r["fraction_of_floor"]))') ||
    result="failed"
  echo "${variant:-(default)}: $result"
done
