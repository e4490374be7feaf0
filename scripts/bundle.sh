#!/usr/bin/env bash
# Packs what the GPU machine needs into .bundle/ (ignored by git): the built
# tools and GPU test programs, the shared libraries that machine lacks, the
# real test models and the kernel templates. Run scripts/gpu-check.sh there
# with .bundle carried along.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
models=${LLAMAC_MODELS:-$(cd .. && pwd)/shared/models}
rm -rf .bundle
mkdir -p .bundle/bin .bundle/lib .bundle/models
cp "$build"/tools/{llamac,llamarun,llamagen} .bundle/bin/
cp "$build"/tests/cuda/{kernel_gpu_tests,gpu_e2e_tests,tp_gpu_tests} .bundle/bin/
cp -L /lib/x86_64-linux-gnu/libsentencepiece.so.0 .bundle/lib/
# NCCL (tensor parallel plans) is opened at run time from .bundle/lib, then the
# default search path, then /usr/local/cuda/lib64 (runtime/cuda/Nccl.h). The GPU
# machine's CUDA toolkit usually has it; the library is ~200 MB, too large to
# carry by default: BUNDLE_NCCL=1 copies it.
if [ "${BUNDLE_NCCL:-0}" = 1 ]; then
  cp -L "${NCCL_LIB:-/usr/local/cuda/lib64/libnccl.so.2}" .bundle/lib/
fi
cp "$models"/{stories260K.bin,llama2xs_gqa_model.bin,aidreams260K.bin,tok512.model,tok512.bin,aidreams260K_tok512.bin} .bundle/models/
strip --strip-debug .bundle/bin/* 2>/dev/null || true
du -sh .bundle
