#!/usr/bin/env bash
# The main job: set-up, build, compile a model into a plan, generate text.
#
#   scripts/run.sh                                   # stories260K from ../shared/models, or a random model
#   MODEL=model.bin TOKENIZER=tokenizer.model PROMPT="Once upon a time" scripts/run.sh
#
# Other knobs: DTYPE (f32|f16|bf16), STEPS, DEVICE (auto|cpu|cuda), OUT (work folder).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
build=${BUILD_DIR:-build}
out=${OUT_DIR:-out}
mkdir -p "$out"
shared=$(cd .. && pwd)/shared/models

model=${MODEL:-}
tokenizer=${TOKENIZER:-}
if [ -z "$model" ] && [ -f "$shared/stories260K.bin" ]; then
  model=$shared/stories260K.bin
  tokenizer=${tokenizer:-$shared/tok512.model}
fi
if [ -z "$model" ]; then
  echo "run: no real model given (MODEL=...) and none in $shared:"
  echo "run: generating a random-weight model; its output is NOISE, not language."
  model=$out/random-tiny.bin
  # Seed 7: its first greedy token is not BOS, which would end the text at once.
  "$build/tools/llamagen" --shape tiny --seed 7 -o "$model"
fi

tok_args=()
[ -n "$tokenizer" ] && tok_args=(--tokenizer "$tokenizer")
plan=$out/$(basename "${model%.*}").plan.pb
"$build/tools/llamac" compile "$model" -o "$plan" --dtype "${DTYPE:-f32}" "${tok_args[@]}"
"$build/tools/llamac" dump "$plan" --summary
prompt_args=()
if [ -n "$tokenizer" ]; then prompt_args=(--prompt "${PROMPT:-Once upon a time}"); fi
"$build/tools/llamarun" "$plan" ${prompt_args[@]+"${prompt_args[@]}"} --steps "${STEPS:-128}" --device "${DEVICE:-auto}"
