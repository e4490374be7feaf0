#!/usr/bin/env bash
# Every GPU check in one go, for the GPU machine (run from the repo root with
# .bundle/ from scripts/bundle.sh beside it). Writes logs and a JSON summary
# to $OUT (default ./gpu-out). Steps can be chosen: STEPS="kernels e2e ...".
#
#   kernels    kernel_gpu_tests: every kernel against a C++ reference;
#              gpu_e2e_tests: whole plans, logits against the CPU executor
#   e2e        greedy tokens CUDA vs CPU on the real models, full seq_len,
#              for every plan kind of PLAN_KINDS
#   random     random stories110M / Llama-3.2-1B shapes (f32), 128 steps, CUDA vs CPU,
#              for every plan kind of PLAN_KINDS
#   recompile  a plan with only sm_80 cubins runs by recompiling with NVRTC
#   sanitizer  compute-sanitizer memcheck and racecheck on stories260K
#   bench      decode tok/s against the bandwidth floor (BENCH_PLANS, e.g.
#              "stories110M:f32 llama-3.2-1b:bf16"; BENCH_TOKENS; BENCH_VARIANTS)
#   profile    per-kernel times from Nsight Compute (ncu) for 2 greedy steps of
#              each PROFILE_PLANS entry (shape:dtype), as CSV
#   tp         tensor parallelism over NCCL: tp_gpu_tests (--tp 1 on one GPU vs
#              the CPU; --tp 2/4 vs one GPU when there are more GPUs); with two
#              or more GPUs also greedy tokens --tp 2 (and 4) vs one GPU on random
#              stories110M / Llama-3.2-1B shapes (f32, 128 steps) and the bench of
#              the Llama-3-8B shape in bf16 at --tp 1, 2, 4 (TP_BENCH_SHAPE,
#              TP_BENCH_DTYPE, TP_BENCH_RANKS; its random f32 checkpoint takes 32 GB of disk)
#
# PLAN_KINDS: "name:flags" entries, flags comma-separated llamac compile flags;
# the default is "default persistent:--persistent" (a kernel per op, and one
# persistent kernel per step); e.g. add "split1:--gemv-split=1".
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
B=$PWD/.bundle
export LD_LIBRARY_PATH=$B/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export PATH=$B/bin:/usr/local/cuda/bin:$PATH
export LLAMAC_MODELS=$B/models
M=$B/models
W=${WORK:-/tmp/llamac-gpu}
mkdir -p "$W"
STEPS=${STEPS:-"kernels e2e random recompile sanitizer bench tp"}
summary=$OUT/summary.json
echo "{" > "$summary"
record() { # name status detail
  printf '  "%s": {"status": "%s", "detail": %s},\n' "$1" "$2" "$(python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$3")" >> "$summary"
  echo "== $1: $2 $3"
}
has() { [[ " $STEPS " == *" $1 "* ]]; }
PLAN_KINDS=${PLAN_KINDS:-"default persistent:--persistent"}
kindSuffix() { [ "${1%%:*}" = default ] || echo "_${1%%:*}"; } # "" or "_persistent"
kindFlags() { [[ $1 == *:* ]] && echo "${1#*:}" | tr ',' ' '; }

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"

# Greedy tokens on `device` for `plan`, `steps` positions, as one line of ids.
tokens() { llamarun "$1" --device "$2" --steps "$3" --prompt-tokens 1 --json --quiet 2>>"$OUT/llamarun.err" |
  python3 -c 'import json,sys; print(" ".join(map(str, json.load(sys.stdin)["tokens"])))'; }

# The random checkpoint of a named shape in $W, generated once per machine.
randomModel() { [ -f "$W/$1.bin" ] || llamagen --shape "$1" --seed 1 -o "$W/$1.bin" > /dev/null; }

compare() { # name plan steps
  local cpu gpu
  cpu=$(tokens "$2" cpu "$3"); gpu=$(tokens "$2" cuda "$3")
  if [ -n "$gpu" ] && [ "$cpu" == "$gpu" ]; then
    record "$1" pass "$(echo $gpu | wc -w) tokens identical"
  else
    local same; same=$(python3 -c 'import sys; a=sys.argv[1].split(); b=sys.argv[2].split(); n=next((i for i,(x,y) in enumerate(zip(a,b)) if x!=y), min(len(a),len(b))); print(n)' "$cpu" "$gpu")
    record "$1" fail "cpu ${cpu:0:200} | gpu ${gpu:0:200} | first $same tokens identical"
  fi
}

if has kernels; then
  kernel_gpu_tests > "$OUT/kernel_gpu_tests.log" 2>&1 && record kernel_gpu_tests pass "$(tail -1 "$OUT/kernel_gpu_tests.log")" \
    || record kernel_gpu_tests fail "$(grep -E 'FAILED|Failure' "$OUT/kernel_gpu_tests.log" | head -20)"
  LLAMAC_TOOLS=$B/bin gpu_e2e_tests > "$OUT/gpu_e2e_tests.log" 2>&1 \
    && record gpu_e2e_tests pass "$(grep -E 'largest relative' "$OUT/gpu_e2e_tests.log" | tr '\n' ' ')" \
    || record gpu_e2e_tests fail "$(grep -E 'FAILED|Failure|error' "$OUT/gpu_e2e_tests.log" | head -20)"
fi

# The e2e and random steps check plans of one kernel per op and, with
# --persistent, of one persistent kernel per step.
if has e2e; then
  for m in stories260K:tok512.model llama2xs_gqa_model:tok512.bin aidreams260K:aidreams260K_tok512.bin; do
    name=${m%%:*}; tok=${m##*:}
    for kind in $PLAN_KINDS; do
      suffix=$(kindSuffix "$kind"); plan="$W/$name$suffix.pb"
      llamac compile "$M/$name.bin" -o "$plan" --tokenizer "$M/$tok" $(kindFlags "$kind") 2>>"$OUT/llamac.err" || { record "e2e_$name$suffix" fail "compile failed"; continue; }
      seq=$(llamac dump "$plan" | sed -n 's/.*max seq len \([0-9]*\).*/\1/p')
      compare "e2e_$name$suffix" "$plan" "$seq"
    done
  done
  llamarun "$W/stories260K.pb" --device cuda --prompt "Once upon a time" --steps 64 > "$OUT/stories260K.txt" 2>&1
  record e2e_text info "$(head -c 300 "$OUT/stories260K.txt")"
fi

if has random; then
  for shape in stories110M llama-3.2-1b; do
    randomModel "$shape"
    for kind in $PLAN_KINDS; do
      suffix=$(kindSuffix "$kind"); plan="$W/$shape$suffix.pb"
      llamac compile "$W/$shape.bin" -o "$plan" --max-seq-len 256 --arch sm_90 $(kindFlags "$kind") 2>>"$OUT/llamac.err" || { record "random_$shape$suffix" fail "compile failed"; continue; }
      compare "random_$shape$suffix" "$plan" 128
    done
  done
fi

if has recompile; then
  llamac compile "$M/stories260K.bin" -o "$W/sm80.pb" --arch sm_80 2>>"$OUT/llamac.err"
  llamarun "$W/sm80.pb" --device cuda --steps 32 --prompt-tokens 1 > "$OUT/recompile.txt" 2>&1
  if grep -q "recompiling" "$OUT/recompile.txt"; then record recompile pass "$(grep recompiling "$OUT/recompile.txt")"
  else record recompile fail "$(tail -3 "$OUT/recompile.txt")"; fi
fi

if has sanitizer; then
  for tool in memcheck racecheck; do
    compute-sanitizer --tool $tool --error-exitcode 9 llamarun "$W/stories260K.pb" --device cuda --steps 24 --prompt-tokens 1 > "$OUT/sanitizer-$tool.log" 2>&1
    rc=$?
    [ $rc -eq 0 ] && record "sanitizer_$tool" pass "$(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/sanitizer-$tool.log" | tail -1)" \
      || record "sanitizer_$tool" fail "rc=$rc $(grep -E 'ERROR|Invalid|race' "$OUT/sanitizer-$tool.log" | head -5)"
  done
fi

if has bench; then
  # BENCH_PLANS: shape:dtype entries. BENCH_VARIANTS: extra runs of each with
  # one feature off: nopdl (LLAMAC_NO_PDL=1), nochain (LLAMAC_CHAIN=1).
  for entry in ${BENCH_PLANS:-stories110M:f32}; do
    shape=${entry%%:*}; dtype=${entry##*:}
    randomModel "$shape"
    [ -f "$W/$shape.$dtype.pb" ] || llamac compile "$W/$shape.bin" -o "$W/$shape.$dtype.pb" --dtype $dtype --arch sm_90 2>>"$OUT/llamac.err" \
      || { record "bench_${shape}_$dtype" fail "compile failed"; continue; }
    for tokens in ${BENCH_TOKENS:-128}; do
      for variant in default ${BENCH_VARIANTS:-}; do
        case $variant in
          nopdl) env=LLAMAC_NO_PDL=1 ;;
          nochain) env=LLAMAC_CHAIN=1 ;;
          *) env= ;;
        esac
        name="bench_${shape}_${dtype}_${tokens}"; [ $variant = default ] || name="${name}_$variant"
        env $env llamarun "$W/$shape.$dtype.pb" --device cuda --bench --bench-tokens $tokens --bench-runs 5 --json --quiet > "$OUT/$name.json" 2>>"$OUT/llamarun.err"
        record "$name" info "$(cat "$OUT/$name.json")"
      done
    done
  done
fi

if has profile; then
  for entry in ${PROFILE_PLANS:-stories110M:f32}; do
    shape=${entry%%:*}; dtype=${entry##*:}
    randomModel "$shape"
    [ -f "$W/$shape.$dtype.pb" ] || llamac compile "$W/$shape.bin" -o "$W/$shape.$dtype.pb" --dtype $dtype --arch sm_90 2>>"$OUT/llamac.err"
    ncu --clock-control none --metrics gpu__time_duration.sum --csv --print-units base \
      llamarun "$W/$shape.$dtype.pb" --device cuda --steps 2 --prompt-tokens 1 --quiet > "$OUT/profile_${shape}_$dtype.csv" 2>"$OUT/profile_${shape}_$dtype.err"
    record "profile_${shape}_$dtype" info "$(grep -c gpu__time_duration "$OUT/profile_${shape}_$dtype.csv") kernels profiled"
  done
fi

if has tp; then
  LLAMAC_TOOLS=$B/bin tp_gpu_tests > "$OUT/tp_gpu_tests.log" 2>&1 \
    && record tp_gpu_tests pass "$(grep -E 'largest relative|NCCL|SKIPPED \]' "$OUT/tp_gpu_tests.log" | tr '\n' ' ')" \
    || record tp_gpu_tests fail "$(grep -E 'FAILED|Failure|error|rank' "$OUT/tp_gpu_tests.log" | head -20)"
  gpus=$(nvidia-smi -L | wc -l)
  if [ "$gpus" -ge 2 ]; then
    # Greedy tokens: --tp N on N GPUs against the unpartitioned plan on one.
    for shape in stories110M llama-3.2-1b; do
      randomModel "$shape"
      [ -f "$W/$shape.pb" ] || llamac compile "$W/$shape.bin" -o "$W/$shape.pb" --max-seq-len 256 --arch sm_90 2>>"$OUT/llamac.err"
      one=$(tokens "$W/$shape.pb" cuda 128)
      for n in 2 4; do
        [ "$gpus" -ge $n ] || continue
        llamac compile "$W/$shape.bin" -o "$W/$shape.tp$n.pb" --tp $n --max-seq-len 256 --arch sm_90 2>>"$OUT/llamac.err" \
          || { record "tp${n}_$shape" fail "compile failed"; continue; }
        many=$(tokens "$W/$shape.tp$n.pb" cuda 128)
        if [ -n "$many" ] && [ "$one" == "$many" ]; then
          record "tp${n}_$shape" pass "$(echo $many | wc -w) tokens identical to one GPU"
        else
          record "tp${n}_$shape" fail "one GPU ${one:0:200} | tp $n ${many:0:200}"
        fi
        rm -f "$W/$shape.tp$n.pb"*
      done
    done
    # Decode speed of the 8B shape: one GPU, then --tp 1/2/4 (one plan at a time: they are large).
    shape=${TP_BENCH_SHAPE:-llama-3-8b}; dtype=${TP_BENCH_DTYPE:-bf16}
    randomModel "$shape"
    for n in ${TP_BENCH_RANKS:-0 1 2 4}; do
      [ "$gpus" -ge $n ] || continue
      plan="$W/$shape.$dtype.tp$n.pb"
      llamac compile "$W/$shape.bin" -o "$plan" --tp $n --dtype $dtype --max-seq-len 1024 --arch sm_90 2>>"$OUT/llamac.err" \
        || { record "tp_bench_${shape}_${dtype}_tp$n" fail "compile failed"; continue; }
      llamarun "$plan" --device cuda --bench --bench-tokens 128 --bench-runs 5 --json --quiet \
        > "$OUT/tp_bench_${shape}_${dtype}_tp$n.json" 2>>"$OUT/llamarun.err"
      record "tp_bench_${shape}_${dtype}_tp$n" info "$(cat "$OUT/tp_bench_${shape}_${dtype}_tp$n.json")"
      rm -f "$plan"*
    done
  else
    record tp_multi_gpu info "one GPU: the --tp 2/4 token checks and the tp bench need two or more"
  fi
fi

echo '  "done": true' >> "$summary"
echo "}" >> "$summary"
