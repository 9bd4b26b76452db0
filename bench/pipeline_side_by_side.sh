#!/usr/bin/env bash
# On the GPU machine: the whole FLUX.1-dev pipeline (encode, 28 steps, decode; random weights of the real shapes)
# by paradit and by diffusers' FluxPipeline (eager, then torch.compile of the transformer) in the same call, same
# card, same token counts and image size. Usage: bench/pipeline_side_by_side.sh BUILD_DIR [SIZE] [STEPS] [ITERS]
set -uo pipefail
BUILD=${1:?build dir}
SIZE=${2:-1024}
STEPS=${3:-28}
ITERS=${4:-3}
source "$(dirname "$0")/device_env.sh"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$BUILD/paradit" bench pipeline --device cuda --size "$SIZE" --steps "$STEPS" --warmup 1 --iters "$ITERS" --json \
  | tee /tmp/paradit_pipeline.jsonl
PYTHONUNBUFFERED=1 python3 "$(dirname "$0")/peers/diffusers_flux_pipeline.py" --size "$SIZE" --steps "$STEPS" \
  --warmup 1 --iters "$ITERS" --modes eager compile | tee /tmp/peers_pipeline.jsonl
python3 - <<'PY'
import json
cols = {}
for path, key in (('/tmp/paradit_pipeline.jsonl', lambda r: 'paradit'),
                  ('/tmp/peers_pipeline.jsonl', lambda r: r['mode'])):
    for line in open(path):
        if line.startswith('{'):
            r = json.loads(line)
            cols[key(r)] = r
p, e, c = cols.get('paradit', {}), cols.get('eager', {}), cols.get('compile', {})
print(f"\n{p.get('size')}² image, {p.get('steps')} steps; median of {p.get('iters')} runs after 1 warm-up")
print('| stage | paradit | diffusers eager | diffusers+compile | paradit/compile |')
print('|---|---|---|---|---|')
for name, k in (('encode s', 'encode_s'), ('denoise s', 'denoise_s'), ('decode s', 'decode_s'),
                ('total s', 'total_s'), ('ms per step', 'step_ms'), ('first run s', 'first_run_s'),
                ('peak GiB', 'peak_gib')):
    a, b, cc = p.get(k), e.get(k), c.get(k)
    ratio = f"{a / cc:.3f}" if a and cc else '-'
    print('| ' + ' | '.join(['-' if v is None else str(v) for v in (name, a, b, cc)] + [ratio]) + ' |')
PY
