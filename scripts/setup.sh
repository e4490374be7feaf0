#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine with the CUDA toolkit lacks to build and
# test llamac. Idempotent: when everything is present it only checks and returns.
set -euo pipefail

packages=(
  cmake ninja-build g++ pkg-config
  protobuf-compiler libprotobuf-dev
  libsentencepiece-dev
  llvm-14-dev llvm-14-tools
  libgtest-dev
  libxxhash-dev
  python3
  zlib1g-dev libtinfo-dev
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ ! -x /usr/local/cuda/bin/nvcc ] && ! command -v nvcc >/dev/null; then
  echo "setup: warning: no CUDA toolkit in /usr/local/cuda; NVRTC code generation will be unavailable" >&2
fi
echo "setup: all build dependencies present"
