#!/usr/bin/env bash
# On the GPU machine: paradit's transformer forward and diffusers' (eager, torch.compile) in the same call,
# same card, same shapes. Usage: bench/transformer_side_by_side.sh BUILD_DIR [SIZES]
set -uo pipefail
BUILD=${1:?build dir}
SIZES=${2:-1024,2048}
source "$(dirname "$0")/device_env.sh"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$BUILD/paradit" bench transformer --device cuda --sizes "$SIZES" --warmup 3 --iters 10 --json | tee /tmp/paradit.jsonl
PYTHONUNBUFFERED=1 python3 "$(dirname "$0")/peers/diffusers_flux_transformer.py" --sizes ${SIZES//,/ } \
  --modes eager compile | tee /tmp/peers.jsonl
python3 - <<'PY'
import json
rows = {}
for line in open('/tmp/paradit.jsonl'):
    if line.startswith('{'):
        r = json.loads(line); rows.setdefault(r['size'], {})['paradit'] = r['median_ms']
for line in open('/tmp/peers.jsonl'):
    if line.startswith('{'):
        r = json.loads(line); rows.setdefault(r['size'], {})[r['mode']] = r['median_ms']
print('\n| size | paradit ms | diffusers eager ms | diffusers+compile ms | paradit/compile |')
print('|---|---|---|---|---|')
for s, v in sorted(rows.items()):
    p, e, c = v.get('paradit'), v.get('eager'), v.get('compile')
    ratio = f"{p / c:.3f}" if p and c else '-'
    print(f"| {s}² | {p} | {e} | {c} | {ratio} |")
PY
