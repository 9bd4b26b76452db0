# Sourced by the side-by-side benchmarks: `run NAME CMD...` runs one bench within what is left of the call's
# budget (deadline, BUDGET_S; RUN_TIMEOUT_S caps one run, default 300 s), its stdout (JSON lines) into
# $RES/NAME.jsonl, its stderr into ${OUT:-/tmp}/NAME.err and its last lines to ours; a run that would start with under 30 s left is
# skipped, so the table still prints. `start_budget NAME` comes first: results under /tmp/NAME (emptied; $RES), the
# call's deadline BUDGET_S (default 540) seconds from now.
start_budget() {
  RES=/tmp/$1
  mkdir -p "$RES" && rm -f "$RES"/*.jsonl
  BUDGET_S=${BUDGET_S:-540}
  deadline=$((SECONDS + BUDGET_S))
}

# The scripts that run variants of `paradit bench pipeline` at one size (profile_regions.sh, env_ab.sh):
# `start_size_bench NAME "$@"` reads their arguments BUILD_DIR [SIZE=2048] [STEPS=8] [ITERS=3] into BUILD, SIZE,
# STEPS and ITERS, starts the budget as NAME and names the card.
start_size_bench() {
  local name=$1
  shift
  BUILD=${1:?build dir}
  SIZE=${2:-2048}
  STEPS=${3:-8}
  ITERS=${4:-3}
  start_budget "$name"
  nvidia-smi --query-gpu=name --format=csv,noheader | head -1
}

run() {
  local name=$1; shift
  local left=$((deadline - SECONDS))
  (( left > ${RUN_TIMEOUT_S:-300} )) && left=${RUN_TIMEOUT_S:-300}
  if (( left < 30 )); then echo "== $name: skipped, past the $BUDGET_S s budget"; return; fi
  echo "== $name (timeout ${left} s): $*"
  local t0=$SECONDS
  timeout -k 10 "$left" "$@" 2> >(tee "${OUT:-/tmp}/$name.err" | tail -n 25 >&2) | tee "$RES/$name.jsonl"
  echo "== $name: rc=${PIPESTATUS[0]} after $((SECONDS - t0)) s"
}
