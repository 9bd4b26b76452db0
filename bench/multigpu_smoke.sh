#!/usr/bin/env bash
# On a machine with 2+ GPUs: the embedded tiny pipeline on 1 GPU and on 2 GPUs (Ulysses, Ring, CFG parallel, TP,
# and PipeFusion and patch parallel with every step a warm-up step, i.e. exact) through NCCL, and the largest
# pixel difference of each multi-GPU image against its 1-GPU twin.
set -uo pipefail
P=${1:-.devrun/paradit}
O=${OUT:-/tmp}
common=(-p "a photo of a cat" -W 256 -H 192 --steps 4 -s 7 -q --device cuda)
cfg=(--cfg-scale 4 -n "blurry")
run() { local name=$1; shift; echo "== $name: $*"; timeout 60 "$P" generate "${common[@]}" "$@" -o "$O/$name.png" || echo "rc=$? for $name"; }
run one
run one_cfg "${cfg[@]}"
run ulysses2 --ulysses 2
run ring2 --ring 2
run cfgpar2 --cfg-parallel "${cfg[@]}"
run tp2 --tp 2
run pipefusion2 --pipefusion 2 --warmup-steps 4
run patchpar2 --patch-parallel 2 --warmup-steps 4
timeout 120 "$P" generate "${common[@]}" --tp 2 --json -o "$O/tp2_json.png" | python3 -c 'import sys, json; print("tp2 memory per rank:", json.load(sys.stdin)["memory"])' || echo "tp2 --json failed"
python3 - "$O" <<'PY'
import sys, numpy as np
from PIL import Image
o = sys.argv[1]
def img(n):
    try: return np.asarray(Image.open(f"{o}/{n}.png"), dtype=np.int16)
    except Exception as e: return None
for n, ref in (("ulysses2", "one"), ("ring2", "one"), ("cfgpar2", "one_cfg"), ("tp2", "one"),
               ("pipefusion2", "one"), ("patchpar2", "one")):
    a, b = img(n), img(ref)
    print(f"{n:10s} vs {ref:8s}:", "missing" if a is None or b is None else f"max |diff| {int(np.abs(a-b).max())}/255, mean {np.abs(a-b).mean():.3f}")
PY
