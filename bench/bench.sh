#!/usr/bin/env bash
# Decode speed across model shapes, weight dtypes and lengths, on a GPU
# machine. Generates random-weight models of the real shapes (llamagen, fixed
# seed), measures the device copy bandwidth, runs `llamarun --bench` for each
# plan at each length and prints one table: tok/s, ms/token, achieved GB/s and
# the fraction of the floor (step weight bytes / copy bandwidth, measured in
# the same run).
#
#   scripts/bundle.sh                  # here: tools into .bundle/
#   bench/bench.sh [OUT]               # there, from the repo root
#
# Knobs: PLANS ("shape:dtype[:kv dtype[:flags]]" entries; flags are llamac
# compile options without their dashes, comma-separated, a value after '=':
# "stories110M:f32:f32:persistent,gemv-split=1"), TOKENS ("128 1024"), RUNS
# (timed runs per point; the median is reported), WORK (where models go; the
# Llama-3-8B shape needs 32 GB there for its f32 checkpoint, deleted after
# compiling), LLAMAC (tools folder, default .bundle/bin).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-$PWD/bench-out}}
mkdir -p "$OUT"
BIN=${LLAMAC:-$PWD/.bundle/bin}
export LD_LIBRARY_PATH=$PWD/.bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
W=${WORK:-/tmp/llamac-bench}
mkdir -p "$W"
PLANS=${PLANS:-"stories110M:f32 stories110M:f16 llama-3.2-1b:bf16 llama-3-8b:bf16"}
TOKENS=${TOKENS:-"128 1024"}
RUNS=${RUNS:-5}

nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
for entry in $PLANS; do
  IFS=: read -r shape dtype kv flags <<< "$entry"
  kv=${kv:-f32}
  name="$shape.$dtype.kv$kv${flags:+.${flags//[,=]/-}}"
  options=()
  IFS=, read -ra items <<< "${flags:-}"
  for item in "${items[@]}"; do options+=("--${item%%=*}"); [[ $item != *=* ]] || options+=("${item#*=}"); done
  plan="$W/$name.pb"
  if [ ! -f "$plan" ]; then
    [ -f "$W/$shape.bin" ] || "$BIN/llamagen" --shape "$shape" --seed 1 -o "$W/$shape.bin" > /dev/null || exit 1
    echo "compiling $name"
    "$BIN/llamac" compile "$W/$shape.bin" -o "$plan" --dtype "$dtype" --kv-dtype "$kv" --arch sm_90 "${options[@]}" \
      2>> "$OUT/llamac.err" || { echo "compile of $name failed (see $OUT/llamac.err)"; continue; }
    # The 8B checkpoint is 32 GB of f32: keep the disk for the next plan.
    [ "$shape" != llama-3-8b ] || rm -f "$W/$shape.bin"
  fi
  for tokens in $TOKENS; do
    "$BIN/llamarun" "$plan" --device cuda --bench --bench-tokens "$tokens" --bench-runs "$RUNS" --json --quiet \
      > "$OUT/$name.$tokens.json" 2>> "$OUT/llamarun.err" || echo "bench of $name at $tokens tokens failed"
  done
  [ "$shape" != llama-3-8b ] || rm -f "$plan" "$plan".weights*
done
python3 bench/table.py "$OUT"/*.json | tee "$OUT/table.md"
