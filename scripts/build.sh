#!/usr/bin/env bash
# Configures and builds llamac in ./build (Ninja, RelWithDebInfo).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
build=${BUILD_DIR:-build}
models=${LLAMAC_MODELS:-$(cd .. && pwd)/shared/models}
if [ ! -f "$build/build.ninja" ]; then
  cmake -G Ninja -B "$build" -S . -DLLAMAC_MODELS_DIR="$models" ${CMAKE_ARGS:-}
fi
cmake --build "$build" -j "${JOBS:-$(nproc)}"
