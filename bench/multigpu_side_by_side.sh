#!/usr/bin/env bash
# On a machine with NGPU GPUs: FLUX.1-dev end to end (encode, STEPS steps, decode; random weights of the real
# shapes) by paradit on 1 GPU and on NGPU GPUs, and by xDiT (bench/peers/xdit_flux.py, eager and torch.compile)
# on the same meshes, in one call on one machine, then a markdown table.
#   Usage: bench/multigpu_side_by_side.sh BUILD_DIR [NGPU=2] [SIZES="1024"] [STEPS=28] [ITERS=2]
#   e.g.   bench/multigpu_side_by_side.sh .devrun 2 "1024 2048" 28 2
# Meshes: ulysses NGPU; ring NGPU; ulysses 2 x ring NGPU/2 (NGPU >= 4); CFG parallel x ulysses NGPU/2, with true
# CFG (a negative prompt, two transformer passes a step). xDiT has no CFG parallel for FLUX (FLUX.1-dev is
# guidance-distilled; xFuserFluxPipeline declares cfg_parallel_available=False), so on that row xDiT does the same
# true-CFG work its own way: both passes one after the other, each over all NGPU ranks (ulysses NGPU). That row's
# 1-GPU reference is paradit's 1-GPU true-CFG run.
# Env: MESHES (names of the meshes to run, default all); ONE_GPU=0 skips the 1-GPU references, ONE_GPU_ITERS
# sets their timed runs (default ITERS); XDIT_MODES (default "eager compile"; compiling takes 1.5-2 min per
# mesh), XDIT_COMPILE_MODE (default reduce-overhead, as xfuser's runner compiles FLUX.1-dev), FORWARD_ITERS
# (default 5) single transformer forwards timed by xDiT too, PARADIT=0 skips paradit's runs, PARADIT_FLAGS adds
# flags to them (e.g. "--ulysses-chunks 2"). BUDGET_S (default 540): a run that would start past it is
# skipped and the table printed with what finished; RUN_TIMEOUT_S (default 300) caps any one run. Eager xDiT runs
# all go before compiled ones, so a tight budget loses compile rows first. The JSON rows, each with its run's
# name, go to $OUT/multigpu_side_by_side.jsonl (or /tmp).
# Within one 10-minute call (estimates, not yet measured: each xDiT run spends ~30 s importing and making weights):
#   XDIT_MODES=eager bench/multigpu_side_by_side.sh .devrun 2 1024 28 2              # paradit + xDiT eager
#   PARADIT=0 XDIT_MODES=compile BUDGET_S=570 bench/multigpu_side_by_side.sh .devrun 2 1024 28 2
set -uo pipefail
BUILD=${1:?build dir}
NGPU=${2:-2}
SIZES=${3:-1024}
STEPS=${4:-28}
ITERS=${5:-2}
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/device_env.sh"
source "$HERE/budgeted_run.sh"
start_budget multigpu_side_by_side  # one file per run; all rows end up in one file under $OUT (few files come back)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c 'from importlib.metadata import version as v
print(*(f"{p} {v(p)}" for p in ("torch", "diffusers", "transformers", "xfuser", "yunchang", "distvae")))' ||
  echo "xDiT's packages are missing: its columns stay empty"

# One mesh a line: name ulysses ring cfg (1: paradit --cfg-parallel, xDiT ulysses NGPU with --true-cfg).
meshes=("ulysses$NGPU $NGPU 1 0" "ring$NGPU 1 $NGPU 0")
(( NGPU >= 4 )) && meshes+=("u2r$((NGPU / 2)) 2 $((NGPU / 2)) 0")
meshes+=("cfg2u$((NGPU / 2)) $((NGPU / 2)) 1 1")
if [[ -n ${MESHES:-} ]]; then  # only the meshes named (space-separated), e.g. MESHES="ulysses4 ring4"
  kept=()
  for m in "${meshes[@]}"; do [[ " $MESHES " == *" ${m%% *} "* ]] && kept+=("$m"); done
  meshes=("${kept[@]}")
fi

if [[ ${PARADIT:-1} != 0 ]]; then
  for size in $SIZES; do
    common=("$BUILD/paradit" bench pipeline --device cuda --size "$size" --steps "$STEPS" --warmup 1 --json)
    read -r -a extra_flags <<<"${PARADIT_FLAGS:-}"
    common+=("${extra_flags[@]}")
    if [[ ${ONE_GPU:-1} != 0 ]]; then
      run "paradit_1gpu_$size" "${common[@]}" --iters "${ONE_GPU_ITERS:-$ITERS}"
      [[ " ${meshes[*]} " == *" 1 1"* ]] && run "paradit_1gpucfg_$size" "${common[@]}" --iters "${ONE_GPU_ITERS:-$ITERS}" --true-cfg
    fi
    for m in "${meshes[@]}"; do
      read -r name u r cfg <<<"$m"
      if (( cfg )); then
        run "paradit_${name}_$size" "${common[@]}" --iters "$ITERS" --ulysses "$u" --ring "$r" --cfg-parallel
      else run "paradit_${name}_$size" "${common[@]}" --iters "$ITERS" --ulysses "$u" --ring "$r"; fi
    done
  done
fi
for mode in ${XDIT_MODES:-eager compile}; do
  for size in $SIZES; do
    for m in "${meshes[@]}"; do
      read -r name u r cfg <<<"$m"
      extra=(--ulysses "$u" --ring "$r")
      (( cfg )) && extra=(--ulysses "$NGPU" --ring 1 --true-cfg)
      run "xdit_${mode}_${name}_$size" env PYTHONUNBUFFERED=1 python3 -m torch.distributed.run --standalone \
        --nproc_per_node "$NGPU" "$HERE/peers/xdit_flux.py" "${extra[@]}" --size "$size" --steps "$STEPS" \
        --iters "$ITERS" --warmup 1 --modes "$mode" --forward-iters "${FORWARD_ITERS:-5}" \
        --compile-mode "${XDIT_COMPILE_MODE:-reduce-overhead}" --dist-timeout 300
    done
  done
done

python3 - "$RES" "$NGPU" "$SIZES" "${OUT:-/tmp}/multigpu_side_by_side.jsonl" <<'PY'
import glob, json, os, sys
res, ngpu, sizes, out = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4]
rows = {}
for path in sorted(glob.glob(f"{res}/*.jsonl")):
    for line in open(path):
        if line.startswith("{"):
            name = os.path.basename(path)[:-len(".jsonl")]
            rows[name] = dict(json.loads(line), run=name)
with open(out, "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows.values())
def cell(r, key="total_s"):
    return f"{r[key]:.2f}" if r and r.get(key) is not None else "-"
def both(r):
    return f"{cell(r)} ({cell(r, 'denoise_s')})"
def ratio(a, b, key):
    return f"{a[key] / b[key]:.2f}" if a and b and a.get(key) and b.get(key) else "-"
card = next((r.get("gpu") or r.get("device") for r in rows.values()), "?")
any_row = next(iter(rows.values()), {})
print(f"\n{card} x{ngpu}; {any_row.get('steps', '?')} steps; median of {any_row.get('iters', '?')} runs after 1 "
      "warm-up; seconds per image, total (denoise). Ratios: xDiT / paradit, total (denoise). cfg rows: true CFG; "
      "paradit splits the two passes over two halves of the GPUs, xDiT runs them one after the other on "
      f"ulysses {ngpu}")
print("| size | mesh | paradit 1 GPU | paradit | scaling | xDiT eager | xDiT compile | eager/paradit | "
      "compile/paradit | xDiT forward ms eager, compile |")
print("|---|---|---|---|---|---|---|---|---|---|")
for size in sizes:
    names = sorted({k.split("_")[-2] for k in rows if k.endswith(f"_{size}") and "1gpu" not in k})
    for name in names:
        one = rows.get(f"paradit_1gpu{'cfg' if name.startswith('cfg') else ''}_{size}")
        p = rows.get(f"paradit_{name}_{size}")
        e, c = rows.get(f"xdit_eager_{name}_{size}"), rows.get(f"xdit_compile_{name}_{size}")
        print(f"| {size}² | {name} | {both(one)} | {both(p)} | {ratio(one, p, 'total_s')}× | {both(e)} | {both(c)} | "
              f"{ratio(e, p, 'total_s')} ({ratio(e, p, 'denoise_s')}) | "
              f"{ratio(c, p, 'total_s')} ({ratio(c, p, 'denoise_s')}) | "
              f"{cell(e, 'forward_ms')}, {cell(c, 'forward_ms')} |")
for k in sorted(rows):
    r = rows[k]
    print(f"{k}: first run {r.get('first_run_s')} s, peak {r.get('peak_gib')} GiB"
          + (f", xDiT attention {r['attention']}" if "attention" in r else ""))
PY
