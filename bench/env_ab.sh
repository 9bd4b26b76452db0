#!/usr/bin/env bash
# On the GPU machine: A/B of environment settings and mesh flags on one pipeline size, every variant in one call
# (same machine, same warm state), then one table of step time and total per variant.
#   Usage: bench/env_ab.sh BUILD_DIR [SIZE=2048] [STEPS=8] [ITERS=3]
# VARIANTS: newline-separated "name|ENV=value ...|paradit flags|binary" (env part may be empty; binary: a file in
# BUILD_DIR, default paradit, e.g. an earlier build carried beside it); BUDGET_S (default 540).
# JSON rows go to $OUT/env_ab.jsonl (or /tmp).
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/device_env.sh"
source "$HERE/budgeted_run.sh"
start_size_bench env_ab "$@"
: "${VARIANTS:?VARIANTS: newline-separated name|env|flags}"
while IFS='|' read -r name envs flags binary; do
  [ -z "$name" ] && continue
  read -r -a env_args <<<"$envs"
  read -r -a flag_args <<<"$flags"
  run "$name" env "${env_args[@]}" "$BUILD/${binary:-paradit}" bench pipeline --device cuda --size "$SIZE" --steps "$STEPS" \
    --iters "$ITERS" --warmup 1 --json "${flag_args[@]}"
done <<<"$VARIANTS"
python3 - "$RES" "${OUT:-/tmp}/env_ab.jsonl" <<'PY'
import glob, json, os, sys
res, out = sys.argv[1], sys.argv[2]
rows = []
for path in sorted(glob.glob(f"{res}/*.jsonl"), key=os.path.getmtime):
    for line in open(path):
        if line.startswith("{"):
            rows.append(dict(json.loads(line), run=os.path.basename(path)[:-len(".jsonl")]))
with open(out, "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows)
print("| variant | mesh | step ms | denoise s | total s | min total s | peak GiB |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['run']} | {r.get('mesh', '1 GPU')} | {r['step_ms']:.1f} | {r['denoise_s']:.3f} | {r['total_s']:.3f} | "
          f"{r['min_total_s']:.3f} | {r['peak_gib']:.1f} |")
PY
