#!/usr/bin/env bash
# On a machine with NGPU GPUs: FLUX.1-dev end to end (encode, STEPS steps, decode; random weights of the real
# shapes) by paradit on 1 GPU and on NGPU GPUs, and by xDiT (bench/peers/xdit_flux.py, eager and torch.compile)
# on the same meshes, in one call on one machine, then a markdown table.
#   Usage: bench/multigpu_side_by_side.sh BUILD_DIR [NGPU=2] [SIZES="1024"] [STEPS=28] [ITERS=2]
#   e.g.   bench/multigpu_side_by_side.sh .devrun 2 "1024 2048" 28 2
# Meshes: ulysses NGPU; ring NGPU; ulysses 2 x ring NGPU/2 (NGPU >= 4); CFG parallel x ulysses NGPU/2 (paradit
# only: xDiT has no CFG parallel for FLUX, whose FLUX.1-dev pipeline is guidance-distilled and makes one
# transformer call per step; paradit's --cfg-parallel runs true CFG, two calls per step, so that row's work is
# doubled and its 1-GPU reference is the CFG-less run).
# Env: XDIT_COMPILE=0 skips xDiT + torch.compile (compiling takes 1.5-2 min per mesh); XDIT_COMPILE_MODE
# (default reduce-overhead, as xfuser's runner compiles FLUX.1-dev); FORWARD_ITERS (default 5) single transformer
# forwards timed by xDiT too; BUDGET_S (default 540): runs that would start past it are skipped and the table is
# printed with what finished; RUN_TIMEOUT_S (default 300) caps any one run. The JSON lines go to $OUT (or /tmp).
set -uo pipefail
BUILD=${1:?build dir}
NGPU=${2:-2}
SIZES=${3:-1024}
STEPS=${4:-28}
ITERS=${5:-2}
HERE=$(cd "$(dirname "$0")" && pwd)
RES=${OUT:-/tmp}/multigpu_side_by_side
mkdir -p "$RES" && rm -f "$RES"/*.jsonl
deadline=$((SECONDS + ${BUDGET_S:-540}))
source "$HERE/device_env.sh"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c 'import diffusers, xfuser, yunchang; print("diffusers", diffusers.__version__, "xfuser",
  xfuser.__version__, "yunchang", yunchang.__version__)' || echo "xDiT not importable: its columns stay empty"

# One mesh a line: name ulysses ring cfg-parallel (0/1).
meshes=("ulysses$NGPU $NGPU 1 0" "ring$NGPU 1 $NGPU 0")
(( NGPU >= 4 )) && meshes+=("u2r$((NGPU / 2)) 2 $((NGPU / 2)) 0")
meshes+=("cfg2u$((NGPU / 2)) $((NGPU / 2)) 1 1")

# run NAME CMD...: runs one bench with what is left of the budget, its JSON lines into $RES/NAME.jsonl.
run() {
  local name=$1; shift
  local left=$((deadline - SECONDS))
  (( left > ${RUN_TIMEOUT_S:-300} )) && left=${RUN_TIMEOUT_S:-300}
  if (( left < 30 )); then echo "== $name: skipped, over the ${BUDGET_S:-540} s budget"; return; fi
  echo "== $name (timeout ${left} s): $*"
  local t0=$SECONDS
  timeout -k 10 "$left" "$@" > >(tee "$RES/$name.jsonl") 2> >(tail -n 25 >&2)
  local rc=$?
  echo "== $name: rc=$rc after $((SECONDS - t0)) s"
}

for size in $SIZES; do
  common=(--size "$size" --steps "$STEPS" --iters "$ITERS" --warmup 1)
  run "paradit_1gpu_$size" "$BUILD/paradit" bench pipeline --device cuda "${common[@]}" --json
  for m in "${meshes[@]}"; do
    read -r name u r cfg <<<"$m"
    extra=(); (( cfg )) && extra=(--cfg-parallel)
    run "paradit_${name}_$size" "$BUILD/paradit" bench pipeline --device cuda "${common[@]}" --json \
      --ulysses "$u" --ring "$r" "${extra[@]}"
  done
done
# xDiT: all eager runs before any compile run, so a tight budget costs compile rows first.
for mode in eager compile; do
  [[ $mode == compile && ${XDIT_COMPILE:-1} == 0 ]] && continue
  for size in $SIZES; do
    for m in "${meshes[@]}"; do
      read -r name u r cfg <<<"$m"
      (( cfg )) && continue  # no CFG parallel for FLUX in xDiT (see the top)
      run "xdit_${mode}_${name}_$size" env PYTHONUNBUFFERED=1 python3 -m torch.distributed.run --standalone \
        --nproc_per_node "$NGPU" "$HERE/peers/xdit_flux.py" --ulysses "$u" --ring "$r" --size "$size" \
        --steps "$STEPS" --iters "$ITERS" --warmup 1 --modes "$mode" --forward-iters "${FORWARD_ITERS:-5}" \
        --compile-mode "${XDIT_COMPILE_MODE:-reduce-overhead}" --dist-timeout 300
    done
  done
done

python3 - "$RES" "$NGPU" "$SIZES" <<'PY'
import glob, json, os, sys
res, ngpu, sizes = sys.argv[1], int(sys.argv[2]), sys.argv[3].split()
rows = {}
for path in glob.glob(f"{res}/*.jsonl"):
    for line in open(path):
        if line.startswith("{"):
            rows[os.path.basename(path)[:-len(".jsonl")]] = json.loads(line)
def cell(r, key="total_s"):
    return f"{r[key]:.2f}" if r and r.get(key) is not None else "-"
def ratio(a, b, key):
    return f"{a[key] / b[key]:.2f}" if a and b and a.get(key) and b.get(key) else "-"
any_row = next(iter(rows.values()), {})
card = next((r.get("gpu") or r.get("device") for r in rows.values()), "?")
print(f"\n{card}, {ngpu} of them; {any_row.get('steps', '?')} steps; median of {any_row.get('iters', '?')} runs after "
      "1 warm-up; seconds per image, total (denoise); xDiT / paradit ratios on total and denoise")
print("| size | mesh | paradit 1 GPU | paradit | scaling | xDiT eager | xDiT compile | eager/paradit | "
      "compile/paradit | xDiT forward ms (eager, compile) |")
print("|---|---|---|---|---|---|---|---|---|---|")
for size in sizes:
    one = rows.get(f"paradit_1gpu_{size}")
    names = sorted({k.split("_")[-2] for k in rows if k.endswith(f"_{size}") and "1gpu" not in k})
    for name in names:
        p = rows.get(f"paradit_{name}_{size}")
        e, c = rows.get(f"xdit_eager_{name}_{size}"), rows.get(f"xdit_compile_{name}_{size}")
        both = lambda r: f"{cell(r)} ({cell(r, 'denoise_s')})"
        print(f"| {size}² | {name} | {both(one)} | {both(p)} | {ratio(one, p, 'total_s')}× | {both(e)} | {both(c)} | "
              f"{ratio(e, p, 'total_s')} ({ratio(e, p, 'denoise_s')}) | "
              f"{ratio(c, p, 'total_s')} ({ratio(c, p, 'denoise_s')}) | "
              f"{cell(e, 'forward_ms')}, {cell(c, 'forward_ms')} |")
for k in sorted(rows):
    if k.startswith("xdit_compile"):
        print(f"{k}: first run (compiling) {rows[k].get('first_run_s')} s, peak {rows[k].get('peak_gib')} GiB")
PY
