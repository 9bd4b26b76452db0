#!/usr/bin/env bash
# Installs what paradit's build needs on Debian/Ubuntu: compilers and libraries from apt (Open MPI for runs over
# several processes included), and — when the CUDA toolkit is present — cuDNN's header-only graph front end from
# PyPI into .deps/ (not committed).
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
pkgs="cmake g++ make libgtest-dev libopenblas-dev nlohmann-json3-dev libpng-dev zlib1g-dev python3-pip libopenmpi-dev openmpi-bin"
missing=$(for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
if [ -n "$missing" ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
fi
if command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ]; then
  if [ ! -f .deps/cudnn-frontend/include/cudnn_frontend.h ]; then
    python3 -m pip install -q --no-deps --target .deps/cudnn-frontend "nvidia-cudnn-frontend==1.32.0"
  fi
fi
