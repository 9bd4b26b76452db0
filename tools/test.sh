#!/usr/bin/env bash
# Sets up, builds and runs every test. GPU tests (ctest label `gpu`) skip cleanly on a machine without a GPU.
# The CUDA backend is built whenever the CUDA toolkit is installed (nvcc on PATH or in /usr/local/cuda).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x /usr/local/cuda/bin/nvcc ] && export PATH="/usr/local/cuda/bin:$PATH"
./tools/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$(nproc)"
ctest --test-dir build --output-on-failure -j "$(nproc)" "$@"
