#!/usr/bin/env python3
"""Dump diffusers' flow-matching schedules, a latent packing example and reference noise values to
tests/fixtures/scheduler/scheduler.json, for tests/scheduler_test.cpp and tests/latents_test.cpp.

Regenerate (from the repository root; CPU only, no network once the packages are installed):

    python3 -m venv /work/venv-sched
    /work/venv-sched/bin/pip install torch==2.15.0 diffusers==0.42.1 numpy==2.4.6 transformers==5.24.0
    /work/venv-sched/bin/python tools/make_scheduler_fixtures.py

(transformers only because diffusers' pipeline modules import it; no model is loaded.) The output is
deterministic: rerunning rewrites an identical file.

What it records:
  * schedules: `FlowMatchEulerDiscreteScheduler` built from the published scheduler_config.json of FLUX.1-dev,
    FLUX.1-schnell and SD3, plus two variants that exercise the other supported options (linear time shift with
    shift_terminal; SD3's own spacing with dynamic shifting). Each is driven exactly as its pipeline drives it,
    through the pipeline module's own `calculate_shift` and `retrieve_timesteps`:
      - FluxPipeline: sigmas = np.linspace(1.0, 1/S, S), mu = calculate_shift(image_seq_len, ...) always;
      - StableDiffusion3Pipeline: no sigmas; mu only when use_dynamic_shifting.
    Steps 1..50 at 256², 512², 768², 1024², 1536², 2048² and 1024 wide × 768 high. A schedule that does not
    depend on the size (static shift) is checked here to be identical at every size and stored once.
  * pack: a random [1, 16, 4, 6] latent and FluxPipeline._pack_latents of it; the image ids of its 2×3 grid.
  * noise: values of paradit's counter-based Gaussian noise computed here independently (same algorithm as
    src/pipeline/latents.cpp, in Python integers and float64), so the C++ generator is pinned.
Floats are stored exactly: float32 bit patterns as 8 hex digits, space-separated.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import struct
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import diffusers  # noqa: E402
from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline  # noqa: E402
from diffusers.pipelines.flux import pipeline_flux  # noqa: E402
from diffusers.pipelines.stable_diffusion_3 import pipeline_stable_diffusion_3 as pipeline_sd3  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent

# The published scheduler/scheduler_config.json files (black-forest-labs/FLUX.1-dev, FLUX.1-schnell,
# stabilityai/stable-diffusion-3-medium-diffusers; SD3.5 large/medium publish the same as SD3).
CONFIGS = {
    "flux_dev": dict(pipeline="flux", config={
        "_class_name": "FlowMatchEulerDiscreteScheduler", "base_image_seq_len": 256, "base_shift": 0.5,
        "max_image_seq_len": 4096, "max_shift": 1.15, "num_train_timesteps": 1000, "shift": 3.0,
        "use_dynamic_shifting": True}),
    "flux_schnell": dict(pipeline="flux", config={
        "_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 1.0}),
    "sd3": dict(pipeline="sd3", config={
        "_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 3.0}),
    # Variants covering the other options paradit implements.
    "flux_linear_terminal": dict(pipeline="flux", config={
        "_class_name": "FlowMatchEulerDiscreteScheduler", "base_image_seq_len": 256, "base_shift": 0.5,
        "max_image_seq_len": 4096, "max_shift": 1.15, "num_train_timesteps": 1000, "shift": 3.0,
        "use_dynamic_shifting": True, "time_shift_type": "linear", "shift_terminal": 0.1}),
    "sd3_dynamic_terminal": dict(pipeline="sd3", config={
        "_class_name": "FlowMatchEulerDiscreteScheduler", "base_image_seq_len": 256, "base_shift": 0.5,
        "max_image_seq_len": 4096, "max_shift": 1.15, "num_train_timesteps": 1000, "shift": 3.0,
        "use_dynamic_shifting": True, "shift_terminal": 0.02}),
}
SIZES = [(256, 256), (512, 512), (768, 768), (1024, 1024), (1536, 1536), (2048, 2048), (1024, 768)]  # (W, H)
STEPS = list(range(1, 51))
VARIANT_STEPS = [2, 4, 28, 50]  # the variants need less coverage; 1 step with shift_terminal is 0/0 (NaN)
VAE_SCALE = 8


def hex32(values) -> str:
    a = np.asarray(values, dtype=np.float32).ravel()
    return " ".join(f"{b:08x}" for b in a.view(np.uint32).tolist())


def flux_schedule(cfg: dict, steps: int, width: int, height: int):
    """FluxPipeline.__call__ step 5, verbatim apart from the inputs."""
    sched = FlowMatchEulerDiscreteScheduler.from_config(cfg)
    h_lat = 2 * (int(height) // (VAE_SCALE * 2))
    w_lat = 2 * (int(width) // (VAE_SCALE * 2))
    image_seq_len = (h_lat // 2) * (w_lat // 2)  # latents.shape[1] of the packed latents
    sigmas = np.linspace(1.0, 1 / steps, steps)
    mu = pipeline_flux.calculate_shift(
        image_seq_len,
        sched.config.get("base_image_seq_len", 256),
        sched.config.get("max_image_seq_len", 4096),
        sched.config.get("base_shift", 0.5),
        sched.config.get("max_shift", 1.15),
    )
    timesteps, _ = pipeline_flux.retrieve_timesteps(sched, steps, "cpu", sigmas=sigmas, mu=mu)
    return image_seq_len, mu, sched.sigmas, timesteps


def sd3_schedule(cfg: dict, steps: int, width: int, height: int):
    """StableDiffusion3Pipeline.__call__ step 5, verbatim apart from the inputs (patch size 2)."""
    sched = FlowMatchEulerDiscreteScheduler.from_config(cfg)
    h_lat, w_lat = int(height) // VAE_SCALE, int(width) // VAE_SCALE
    image_seq_len = (h_lat // 2) * (w_lat // 2)
    kwargs = {}
    mu = None
    if sched.config.get("use_dynamic_shifting", None):
        mu = pipeline_sd3.calculate_shift(
            image_seq_len,
            sched.config.get("base_image_seq_len", 256),
            sched.config.get("max_image_seq_len", 4096),
            sched.config.get("base_shift", 0.5),
            sched.config.get("max_shift", 1.16),
        )
        kwargs["mu"] = mu
    timesteps, _ = pipeline_sd3.retrieve_timesteps(sched, steps, "cpu", sigmas=None, **kwargs)
    return image_seq_len, mu, sched.sigmas, timesteps


def schedules() -> tuple[dict, list]:
    configs, cases = {}, []
    for name, spec in CONFIGS.items():
        fn = flux_schedule if spec["pipeline"] == "flux" else sd3_schedule
        static = not spec["config"].get("use_dynamic_shifting", False)
        steps_list = STEPS if name in ("flux_dev", "flux_schnell", "sd3") else VARIANT_STEPS
        sched = FlowMatchEulerDiscreteScheduler.from_config(spec["config"])
        configs[name] = dict(
            pipeline="FluxPipeline" if spec["pipeline"] == "flux" else "StableDiffusion3Pipeline",
            scheduler_config=spec["config"],
            size_independent=static,
            train_sigma_max=hex32([sched.sigma_max]),
            train_sigma_min=hex32([sched.sigma_min]),
        )
        for steps in steps_list:
            first = None
            for (w, h) in SIZES:
                n, mu, sig, ts = fn(spec["config"], steps, w, h)
                assert sig.dtype == torch.float32 and ts.dtype == torch.float32
                assert sig.shape == (steps + 1,) and ts.shape == (steps,) and float(sig[-1]) == 0.0
                case = dict(config=name, steps=steps, width=w, height=h, image_seq_len=n,
                            mu=None if mu is None else float(mu),
                            sigmas=hex32(sig.numpy()), timesteps=hex32(ts.numpy()))
                if static:
                    if first is None:
                        first = case
                        case = dict(case, width=None, height=None, image_seq_len=None)
                        cases.append(case)
                    else:  # the stored schedule must hold at every size
                        assert case["sigmas"] == first["sigmas"] and case["timesteps"] == first["timesteps"], (
                            name, steps, w, h)
                else:
                    cases.append(case)
    return configs, cases


def pack_example() -> dict:
    g = torch.Generator().manual_seed(20240601)
    lat = torch.randn(1, 16, 4, 6, generator=g, dtype=torch.float32)
    packed = FluxPipeline._pack_latents(lat, 1, 16, 4, 6)
    back = FluxPipeline._unpack_latents(packed, 4 * VAE_SCALE, 6 * VAE_SCALE, VAE_SCALE)
    assert torch.equal(back, lat)
    ids = FluxPipeline._prepare_latent_image_ids(1, 2, 3, "cpu", torch.float32)
    return dict(unpacked_shape=list(lat.shape), packed_shape=list(packed.shape), unpacked=hex32(lat.numpy()),
                packed=hex32(packed.numpy()), image_ids_shape=list(ids.shape), image_ids=hex32(ids.numpy()))


# ---- paradit's noise, written independently of the C++ (src/pipeline/latents.cpp) -------------------------
M64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
BATCH_MUL = 0xD1B54A32D192ED03


def splitmix64(x: int) -> int:
    x = (x + GOLDEN) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def noise_value(seed: int, b: int, i: int) -> float:
    stream = splitmix64((splitmix64(seed) + b * BATCH_MUL) & M64)
    pair = i >> 1
    a = splitmix64((stream + (2 * pair) * GOLDEN) & M64)
    c = splitmix64((stream + (2 * pair + 1) * GOLDEN) & M64)
    u1 = 1.0 - (a >> 11) * 2.0 ** -53
    u2 = (c >> 11) * 2.0 ** -53
    r = math.sqrt(-2.0 * math.log(u1))
    theta = 6.283185307179586 * u2
    return r * math.sin(theta) if i & 1 else r * math.cos(theta)


def noise_reference() -> list:
    out = []
    for seed, b in [(0, 0), (0, 1), (42, 0), (42, 3), (M64, 7)]:
        idx = list(range(16)) + [1000, 1001, 262143, 10**9 + 7]
        out.append(dict(seed=str(seed), batch_index=b, indices=idx,
                        values=hex32([noise_value(seed, b, i) for i in idx])))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(REPO_ROOT / "tests" / "fixtures" / "scheduler"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    configs, cases = schedules()
    doc = dict(
        about="diffusers FlowMatchEulerDiscreteScheduler schedules as FluxPipeline / StableDiffusion3Pipeline "
              "compute them; made by tools/make_scheduler_fixtures.py, do not edit",
        encoding="float arrays are float32 bit patterns, 8 hex digits each, space-separated; sigmas have "
                 "steps+1 values (terminal 0), timesteps steps values; width/height/image_seq_len are null for "
                 "a size-independent (static) schedule, verified identical at every size in `sizes`",
        versions=dict(python=sys.version.split()[0], diffusers=diffusers.__version__, torch=torch.__version__,
                      numpy=np.__version__),
        sizes=[list(s) for s in SIZES],
        configs=configs,
        cases=cases,
        pack=pack_example(),
        noise=noise_reference(),
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "scheduler.json"
    # One line per top-level key and per schedule: compact, yet a regenerated file diffs readably.
    lines = []
    for key, value in doc.items():
        if key == "cases":
            body = ",\n".join(json.dumps(c, separators=(",", ":")) for c in value)
            lines.append(f'"cases":[\n{body}\n]')
        else:
            lines.append(f"{json.dumps(key)}:{json.dumps(value, separators=(',', ':'))}")
    path.write_text("{\n" + ",\n".join(lines) + "\n}\n")
    json.loads(path.read_text())
    print(f"wrote {path} ({path.stat().st_size} bytes, {len(cases)} schedules)")


if __name__ == "__main__":
    main()
