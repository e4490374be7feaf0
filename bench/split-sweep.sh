#!/usr/bin/env bash
# Tuning: decode speed and per-kernel times (Nsight Compute) of one shape with
# every matmul forced to 1, 2, 4 and 8 warps per row, next to the per-shape
# choice (launch::gemvSplit). On the GPU machine, .bundle carried:
#   SHAPE=llama-3.2-1b DTYPE=bf16 [SPLITS="0 1 2 4 8"] bench/split-sweep.sh OUT
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-$PWD/sweep-out}
mkdir -p "$OUT"
BIN=$PWD/.bundle/bin
export LD_LIBRARY_PATH=$PWD/.bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
W=${WORK:-/tmp/llamac-bench}
mkdir -p "$W"
SHAPE=${SHAPE:-llama-3.2-1b}
DTYPE=${DTYPE:-bf16}
[ -f "$W/$SHAPE.bin" ] || "$BIN/llamagen" --shape "$SHAPE" --seed 1 -o "$W/$SHAPE.bin" > /dev/null || exit 1
for split in ${SPLITS:-0 1 2 4 8}; do
  plan="$W/$SHAPE.$DTYPE.split$split.pb"
  "$BIN/llamac" compile "$W/$SHAPE.bin" -o "$plan" --dtype "$DTYPE" --arch sm_90 --gemv-split $split 2>> "$OUT/llamac.err" || continue
  echo "split $split: $(LLAMAC=$BIN bench/variants.sh "$plan" "" | sed 's/^(default): //')"
  if command -v ncu > /dev/null; then
    ncu --clock-control none --metrics gpu__time_duration.sum --csv --print-units base \
      "$BIN/llamarun" "$plan" --device cuda --steps 2 --prompt-tokens 1 --quiet > "$OUT/split$split.csv" 2> /dev/null
  fi
  rm -f "$plan" "$plan".weights*
done
