#!/usr/bin/env bash
# Sets up, builds paradit and makes an image with the embedded default (a tiny random FLUX pipeline shipped in
# models/tiny-flux: the picture is noise-like, the run is real). Extra arguments go to `paradit generate`.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x /usr/local/cuda/bin/nvcc ] && export PATH="/usr/local/cuda/bin:$PATH"
./tools/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" --target paradit_cli
if [ $# -eq 0 ]; then set -- -p "a photo of a cat wearing a tiny hat" -o paradit.png; fi
./build/paradit generate "$@"
