#!/usr/bin/env bash
# On the GPU machine: where a step's time goes, one GPU against several. Runs `paradit bench pipeline --profile`
# on 1 GPU and on each mesh, then one table of rank 0's device time per region (ms per denoising step); the
# 1-GPU column is also shown divided by the mesh's GPU count — what a perfectly split step would take — so the
# difference per region is the parallel overhead (transfers are inside "attention (+ SP transfers)" and
# "out GEMMs (+ TP all-reduce)").
#   Usage: bench/profile_regions.sh BUILD_DIR [SIZE=2048] [STEPS=8] [ITERS=3]
# Env: MESHES (default "--ulysses 4|--ring 4"; '|'-separated flag sets), BUDGET_S (default 540),
# RUN_TIMEOUT_S (default 300). JSON rows go to $OUT/profile_regions.jsonl (or /tmp).
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/device_env.sh"
source "$HERE/budgeted_run.sh"
start_size_bench profile_regions "$@"

common=("$BUILD/paradit" bench pipeline --device cuda --size "$SIZE" --steps "$STEPS" --iters "$ITERS" --warmup 1
        --json --profile)
run "p0_1gpu" "${common[@]}"
IFS='|' read -r -a meshes <<<"${MESHES:---ulysses 4|--ring 4}"
i=1
for m in "${meshes[@]}"; do
  read -r -a flags <<<"$m"
  run "p${i}_${m// /}" "${common[@]}" "${flags[@]}"
  i=$((i + 1))
done

python3 - "$RES" "${OUT:-/tmp}/profile_regions.jsonl" <<'PY'
import glob, json, os, sys
res, out = sys.argv[1], sys.argv[2]
rows = []
for path in sorted(glob.glob(f"{res}/*.jsonl")):
    for line in open(path):
        if line.startswith("{"):
            rows.append(dict(json.loads(line), run=os.path.basename(path)[:-len(".jsonl")]))
with open(out, "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows)
one = next((r for r in rows if r["run"].endswith("1gpu")), None)
if not one:
    sys.exit("no 1-GPU row")
names = list(one.get("regions_ms_per_step", {}))
for r in rows:
    names += [n for n in r.get("regions_ms_per_step", {}) if n not in names]
head = ["region", "1 GPU"]
for r in rows:
    if r is one:
        continue
    head += [f"{r.get('mesh', r['run'])}", f"1 GPU / {r.get('ranks', 1)}", "overhead"]
print(f"\n{one['size']}², {one['steps']} steps, median of {one['iters']}; rank 0's device time per step, ms")
print("| " + " | ".join(head) + " |")
print("|" + "---|" * len(head))
for n in names + ["all"]:
    def get(r):
        reg = r.get("regions_ms_per_step", {})
        return sum(reg.values()) if n == "all" else reg.get(n, 0.0)
    cells = [n, f"{get(one):.2f}"]
    for r in rows:
        if r is one:
            continue
        share = get(one) / r.get("ranks", 1)
        cells += [f"{get(r):.2f}", f"{share:.2f}", f"{get(r) - share:+.2f}"]
    print("| " + " | ".join(cells) + " |")
for r in rows:
    print(f"{r['run']}: total {r['total_s']:.3f} s, denoise {r['denoise_s']:.3f} s, step {r['step_ms']:.1f} ms")
PY
