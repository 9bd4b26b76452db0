"""Times diffusers' FluxTransformer2DModel forward (FLUX.1-dev shape, random bf16 weights) on one GPU.

The peer for `paradit bench transformer`: same config, same token counts (image tokens (H/16)·(W/16) plus
512 text tokens), median of --iters timed forwards after --warmup, CUDA events around each call.
Modes: eager, and torch.compile (first call compiles; reported separately).

    python3 bench/peers/diffusers_flux_transformer.py --sizes 1024 2048 --modes eager compile
Prints one JSON line per (mode, size).
"""
import argparse
import json
import statistics
import time

import torch
from diffusers import FluxTransformer2DModel


def make_model():
    torch.manual_seed(0)
    with torch.device("cuda"):
        prev = torch.get_default_dtype()
        torch.set_default_dtype(torch.bfloat16)
        model = FluxTransformer2DModel(
            patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
            num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True,
            axes_dims_rope=(16, 56, 56))
        torch.set_default_dtype(prev)
    return model.eval()


def make_inputs(size, text_len=512):
    h = w = size // 16
    g = torch.Generator(device="cuda").manual_seed(1)
    kw = dict(device="cuda", dtype=torch.bfloat16, generator=g)
    img_ids = torch.zeros(h, w, 3, device="cuda")
    img_ids[..., 1] = torch.arange(h, device="cuda")[:, None]
    img_ids[..., 2] = torch.arange(w, device="cuda")[None, :]
    return dict(
        hidden_states=torch.randn(1, h * w, 64, **kw),
        encoder_hidden_states=torch.randn(1, text_len, 4096, **kw),
        pooled_projections=torch.randn(1, 768, **kw),
        timestep=torch.tensor([0.75], device="cuda", dtype=torch.bfloat16),
        guidance=torch.tensor([3.5], device="cuda", dtype=torch.float32),
        img_ids=img_ids.reshape(-1, 3),
        txt_ids=torch.zeros(text_len, 3, device="cuda"),
        return_dict=False,
    )


def time_forward(fn, inputs, warmup, iters):
    for _ in range(warmup):
        fn(**inputs)
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn(**inputs)
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times), times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048])
    ap.add_argument("--modes", nargs="+", default=["eager", "compile"])
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--iters", type=int, default=10)
    args = ap.parse_args()
    model = make_model()
    gpu = torch.cuda.get_device_name()
    for mode in args.modes:
        fn = model if mode == "eager" else torch.compile(model)
        for size in args.sizes:
            inputs = make_inputs(size)
            first = None
            with torch.inference_mode():
                if mode == "compile":
                    t0 = time.perf_counter()
                    fn(**inputs)
                    torch.cuda.synchronize()
                    first = time.perf_counter() - t0
                torch.cuda.reset_peak_memory_stats()
                med, times = time_forward(fn, inputs, args.warmup, args.iters)
            print(json.dumps(dict(peer="diffusers", mode=mode, size=size, gpu=gpu, median_ms=round(med, 2),
                                  times_ms=[round(t, 2) for t in times], first_call_s=first,
                                  peak_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2))), flush=True)


if __name__ == "__main__":
    main()
