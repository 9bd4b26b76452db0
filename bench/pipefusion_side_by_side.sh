#!/usr/bin/env bash
# On a machine with 4 GPUs: the approximate and memory-saving methods — PipeFusion 2 and 4, PipeFusion 2 x
# Ulysses 2, tensor parallel 2 and 4 — by paradit, and PipeFusion by xDiT (bench/peers/xdit_flux.py, eager) with
# the same stages, patches and warm-up steps, FLUX.1-dev end to end (random weights of the real shapes), in one
# call on one machine; then a markdown table of latency and peak memory per GPU. xDiT has no tensor
# parallelism for FLUX: those rows have no peer.
#   Usage: bench/pipefusion_side_by_side.sh BUILD_DIR [SIZE=1024] [STEPS=28] [ITERS=10] [WARMUP_STEPS=1]
# Env: BUDGET_S (default 540), RUN_TIMEOUT_S (default 300), CONFIGS (names to run, default all). JSON rows go
# to $OUT/pipefusion_side_by_side.jsonl (or /tmp).
set -uo pipefail
BUILD=${1:?build dir}
SIZE=${2:-1024}
STEPS=${3:-28}
ITERS=${4:-10}
WARM=${5:-1}
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/device_env.sh"
source "$HERE/budgeted_run.sh"
start_budget pipefusion_side_by_side
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1

# name ranks pipefusion ulysses tp (patches = pipefusion)
configs=("pp2 2 2 1 1" "pp4 4 4 1 1" "pp2u2 4 2 2 1" "tp2 2 1 1 2" "tp4 4 1 1 4")
wanted() { [[ -z ${CONFIGS:-} || " $CONFIGS " == *" $1 "* ]]; }
for c in "${configs[@]}"; do
  read -r name n pp u tp <<<"$c"
  wanted "$name" || continue
  stale=()
  (( pp > 1 )) && stale=(--pipefusion "$pp" --patches "$pp" --warmup-steps "$WARM")
  run "paradit_$name" "$BUILD/paradit" bench pipeline --device cuda --size "$SIZE" --steps "$STEPS" --iters "$ITERS" \
    --warmup 1 --json "${stale[@]}" --ulysses "$u" --tp "$tp"
done
for c in "${configs[@]}"; do
  read -r name n pp u tp <<<"$c"
  (( pp > 1 )) && wanted "$name" || continue
  run "xdit_$name" env PYTHONUNBUFFERED=1 python3 -m torch.distributed.run --standalone --nproc_per_node "$n" \
    "$HERE/peers/xdit_flux.py" --pipefusion "$pp" --patches "$pp" --warmup-steps "$WARM" --ulysses "$u" \
    --size "$SIZE" --steps "$STEPS" --iters "$ITERS" --warmup 1 --modes eager --dist-timeout 120
done

python3 - "$RES" "${OUT:-/tmp}/pipefusion_side_by_side.jsonl" <<'PY'
import glob, json, os, sys
res, out = sys.argv[1], sys.argv[2]
rows = {}
for path in sorted(glob.glob(f"{res}/*.jsonl")):
    for line in open(path):
        if line.startswith("{"):
            rows[os.path.basename(path)[:-len(".jsonl")]] = json.loads(line)
with open(out, "w") as f:
    f.writelines(json.dumps(dict(r, run=k)) + "\n" for k, r in rows.items())
def cell(r):
    return f"{r['total_s']:.2f} ({r['denoise_s']:.2f})" if r else "-"
def mem(r):
    return f"{r['peak_gib']:.1f}" if r and r.get("peak_gib") is not None else "-"
any_row = next(iter(rows.values()), {})
print(f"\n{any_row.get('size', '?')}², {any_row.get('steps', '?')} steps; median of {any_row.get('iters', '?')} "
      "runs after 1 warm-up; seconds per image, total (denoise); peak GiB: the largest over the GPUs")
print("| config | paradit | paradit peak GiB/GPU | xDiT | xDiT peak GiB/GPU | xDiT / paradit |")
print("|---|---|---|---|---|---|")
for name in ("pp2", "pp4", "pp2u2", "tp2", "tp4"):
    p, x = rows.get(f"paradit_{name}"), rows.get(f"xdit_{name}")
    if not p and not x:
        continue
    ratio = f"{x['total_s'] / p['total_s']:.2f}" if p and x else "-"
    print(f"| {name} | {cell(p)} | {mem(p)} | {cell(x)} | {mem(x)} | {ratio} |")
PY
