#!/usr/bin/env bash
# The whole test suite: set-up, build, then every test (unit, IR text,
# numeric, end-to-end on the real models in ../shared/models, NVRTC
# compilation of every kernel). GPU tests skip themselves without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
build=${BUILD_DIR:-build}
ctest --test-dir "$build" --output-on-failure -j "${JOBS:-$(nproc)}" "$@"
