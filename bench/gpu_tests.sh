#!/usr/bin/env bash
# On the GPU machine: runs every GPU test binary in DIR, full logs to $OUT (when set), one summary line each.
# A test that hangs is killed after TEST_TIMEOUT_S (default 240) seconds, so one bug cannot eat a device call;
# collectives give up after PARADIT_COMM_TIMEOUT (60 s here) with an error naming the late ranks.
DIR=${1:?dir with *_test binaries}
export PARADIT_COMM_TIMEOUT=${PARADIT_COMM_TIMEOUT:-60}
rc=0
for t in "$DIR"/*_test; do
  name=$(basename "$t")
  log=${OUT:-/tmp}/$name.log
  timeout -k 10 "${TEST_TIMEOUT_S:-240}" "$t" > "$log" 2>&1
  code=$?
  [ $code -eq 124 ] && echo "$name: killed after ${TEST_TIMEOUT_S:-240} s (hung?)"
  [ $code -eq 0 ] || rc=1
  printf '%-28s rc=%d  %s\n' "$name" "$code" "$(grep -E '^\[  (PASSED|FAILED|SKIPPED)' "$log" | tr '\n' ' ')"
  grep -E '^\[  FAILED  \] [A-Za-z]' "$log" | head -5
  grep -E 'peak|GiB' "$log" | head -6  # memory measurements (the parallel VAE's per GPU) come back in the output
done
exit $rc
