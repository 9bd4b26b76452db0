#!/usr/bin/env python3
"""Make the tiny VAE decoder fixtures under tests/fixtures/vae/ with the real diffusers AutoencoderKL.

Regenerate (from the repository root; CPU only, no network needed once the packages are installed):

    python3 -m venv /work/venv-vae
    /work/venv-vae/bin/pip install -r tools/requirements-fixtures.txt     # torch, diffusers, safetensors, numpy
    /work/venv-vae/bin/python tools/make_vae_fixtures.py

Options: `--out DIR` (default: tests/fixtures/vae).

Per fixture:
  1. builds a tiny `diffusers.AutoencoderKL` and re-initialises EVERY parameter from a fixed seed (convolution and
     Linear weights ~ N(0, 1/fan_in), biases ~ N(0, 0.1^2), GroupNorm weights ~ 1 + N(0, 0.1^2), GroupNorm biases
     ~ N(0, 0.1^2)): nothing is zero, activations stay O(1);
  2. saves it as a diffusers folder (<name>/vae/: config.json + diffusion_pytorch_model.safetensors) and as an
     LDM/BFL single file (<name>/<name>_ldm.safetensors, encoder included) made by the inverse of diffusers'
     `convert_ldm_vae_checkpoint`; verifies the single file by converting it back with that function (state dicts
     equal bit for bit) and by loading it with `AutoencoderKL.from_single_file` (same outputs);
  3. runs float32 CPU decodes and writes <name>/io.safetensors (all NCHW, as diffusers has them):
       latents            random N(0, 1) latents, the input of every case below
       decoded            vae.decode(latents).sample                       (the decoder's raw output)
       conv_in, mid_block, up_blocks.0   outputs of those decoder modules during that decode
       image              FluxPipeline's tail: vae.decode(latents / scaling_factor + shift_factor), then
                          VaeImageProcessor.postprocess(output_type="np"), (x * 255).round() — uint8 values, stored
                          as F16 (exact for 0..255) because paradit's reader has no U8; NHWC [B, H, W, 3]
       decoded_tiled      (flux_tiny only) the same decode after vae.enable_tiling(): sample_size 32 makes 4x4-latent
                          tiles, so the 8x12 latents take 3x4 overlapping tiles, the last ones partial
       latents_b2, decoded_b2, image_b2   (flux_tiny only) a batch of 2
  4. writes <out>/README.md describing all of it.

Everything is deterministic: fixed seeds, float32, CPU, one thread.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import diffusers  # noqa: E402
import safetensors  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from diffusers import AutoencoderKL  # noqa: E402
from diffusers.image_processor import VaeImageProcessor  # noqa: E402
from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
REGEN_CMD = "/work/venv-vae/bin/python tools/make_vae_fixtures.py"
SIZE_LIMIT = 1_500_000  # bytes for the whole tests/fixtures/vae tree

FIXTURES = [
    dict(
        name="flux_tiny",
        seed=4321,
        # FLUX.1's structure (16 latent channels, 4 up blocks, no quant convs, mid attention) at tiny widths.
        config=dict(
            in_channels=3,
            out_channels=3,
            latent_channels=16,
            block_out_channels=[8, 16, 16, 16],
            layers_per_block=1,
            down_block_types=["DownEncoderBlock2D"] * 4,
            up_block_types=["UpDecoderBlock2D"] * 4,
            norm_num_groups=4,
            act_fn="silu",
            sample_size=32,
            scaling_factor=0.3611,
            shift_factor=0.1159,
            use_quant_conv=False,
            use_post_quant_conv=False,
            mid_block_add_attention=True,
            force_upcast=True,
        ),
        latents=[1, 16, 8, 12],  # non-square
        latents_b2=[2, 16, 6, 4],
        tiled=True,
        ldm_prefix="",  # as BFL's ae.safetensors
    ),
    dict(
        name="sd_style_tiny",
        seed=8765,
        # The other branches of the decoder: post_quant_conv, no mid attention, 3 resnets per up block, 4 latent
        # channels, scaling without shift (shift_factor null), two blocks (scale factor 2), an LDM prefix.
        config=dict(
            in_channels=3,
            out_channels=3,
            latent_channels=4,
            block_out_channels=[8, 8],
            layers_per_block=2,
            down_block_types=["DownEncoderBlock2D"] * 2,
            up_block_types=["UpDecoderBlock2D"] * 2,
            norm_num_groups=4,
            act_fn="silu",
            sample_size=32,
            scaling_factor=0.18215,
            shift_factor=None,
            use_quant_conv=True,
            use_post_quant_conv=True,
            mid_block_add_attention=False,
        ),
        latents=[1, 4, 6, 10],
        latents_b2=None,
        tiled=False,
        ldm_prefix="first_stage_model.",  # as SD1.x checkpoints carry it
    ),
]


# --------------------------------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------------------------------
def reinit_parameters(model: torch.nn.Module, seed: int) -> None:
    """Give every parameter a non-zero random value (deterministic, module order)."""
    gen = torch.Generator().manual_seed(seed)
    done = set()
    with torch.no_grad():
        for _, mod in model.named_modules():
            if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)):
                fan_in = mod.weight[0].numel()
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=gen) / fan_in**0.5)
                done.add(id(mod.weight))
                if mod.bias is not None:
                    mod.bias.copy_(0.1 * torch.randn(mod.bias.shape, generator=gen))
                    done.add(id(mod.bias))
            elif isinstance(mod, torch.nn.GroupNorm):
                mod.weight.copy_(1.0 + 0.1 * torch.randn(mod.weight.shape, generator=gen))
                mod.bias.copy_(0.1 * torch.randn(mod.bias.shape, generator=gen))
                done.update((id(mod.weight), id(mod.bias)))
    for name, p in model.named_parameters():
        assert id(p) in done, f"parameter {name} was not re-initialised"
        assert p.dtype == torch.float32, name
        assert bool((p != 0).all()), f"parameter {name} has an exact zero"


def build_model(fx: dict) -> AutoencoderKL:
    torch.manual_seed(fx["seed"])
    model = AutoencoderKL(**fx["config"])
    reinit_parameters(model, fx["seed"])
    return model.to(torch.float32).eval()


# --------------------------------------------------------------------------------------------------------------------
# diffusers -> LDM names (inverse of diffusers.loaders.single_file_utils.convert_ldm_vae_checkpoint)
# --------------------------------------------------------------------------------------------------------------------
def diffusers_to_ldm(sd: dict, num_blocks: int, prefix: str) -> dict:
    out = {}
    for key, value in sd.items():
        k = key
        for part in ("encoder", "decoder"):
            k = k.replace(f"{part}.conv_norm_out.", f"{part}.norm_out.")
            k = k.replace(f"{part}.mid_block.resnets.0.", f"{part}.mid.block_1.")
            k = k.replace(f"{part}.mid_block.resnets.1.", f"{part}.mid.block_2.")
            k = k.replace(f"{part}.mid_block.attentions.0.", f"{part}.mid.attn_1.")
        for i in range(num_blocks):
            k = k.replace(f"encoder.down_blocks.{i}.resnets.", f"encoder.down.{i}.block.")
            k = k.replace(f"encoder.down_blocks.{i}.downsamplers.0.conv.", f"encoder.down.{i}.downsample.conv.")
            # LDM numbers the decoder's levels from the highest resolution: up_blocks.i is up.(n-1-i).
            k = k.replace(f"decoder.up_blocks.{i}.resnets.", f"decoder.up.{num_blocks - 1 - i}.block.")
            k = k.replace(f"decoder.up_blocks.{i}.upsamplers.0.conv.",
                          f"decoder.up.{num_blocks - 1 - i}.upsample.conv.")
        k = k.replace(".conv_shortcut.", ".nin_shortcut.")
        if ".mid.attn_1." in k:
            k = (k.replace(".group_norm.", ".norm.").replace(".to_q.", ".q.").replace(".to_k.", ".k.")
                 .replace(".to_v.", ".v.").replace(".to_out.0.", ".proj_out."))
            if k.endswith(".weight") and ".norm." not in k:
                value = value[:, :, None, None]  # LDM keeps the projections as 1x1 convolutions
        assert prefix + k not in out, k
        out[prefix + k] = value.contiguous()
    return out


# --------------------------------------------------------------------------------------------------------------------
# Decodes
# --------------------------------------------------------------------------------------------------------------------
def decode(vae: AutoencoderKL, z: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return vae.decode(z).sample


def decode_with_hooks(vae: AutoencoderKL, z: torch.Tensor) -> dict:
    cap, hooks = {}, []

    def reg(mod, name):
        hooks.append(mod.register_forward_hook(lambda _m, _a, out: cap.__setitem__(name, out.detach().clone())))

    reg(vae.decoder.conv_in, "conv_in")
    reg(vae.decoder.mid_block, "mid_block")
    reg(vae.decoder.up_blocks[0], "up_blocks.0")
    try:
        cap["decoded"] = decode(vae, z)
    finally:
        for h in hooks:
            h.remove()
    return cap


def pipeline_image(vae: AutoencoderKL, latents: torch.Tensor) -> torch.Tensor:
    """FluxPipeline.__call__'s tail (after _unpack_latents), verbatim, then numpy_to_pil's uint8 conversion."""
    processor = VaeImageProcessor(vae_scale_factor=2 ** (len(vae.config.block_out_channels) - 1) * 2)
    with torch.no_grad():
        shift = vae.config.shift_factor if vae.config.shift_factor is not None else 0.0
        z = (latents / vae.config.scaling_factor) + shift
        image = vae.decode(z, return_dict=False)[0]
        np_image = processor.postprocess(image, output_type="np")
        pil = processor.postprocess(image, output_type="pil")
    u8 = (np_image * 255).round().astype("uint8")
    assert all(np.array_equal(np.asarray(p), u8[i]) for i, p in enumerate(pil)), "np and pil outputs disagree"
    return torch.from_numpy(u8.astype(np.float16))  # NHWC, exact integers


def assert_state_dicts_equal(a: dict, b: dict, what: str) -> None:
    assert set(a) == set(b), f"{what}: key sets differ: {sorted(set(a) ^ set(b))}"
    for k in a:
        assert a[k].shape == b[k].shape, f"{what}: {k} shape {a[k].shape} vs {b[k].shape}"
        assert torch.equal(a[k], b[k]), f"{what}: {k} differs"


# --------------------------------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------------------------------
def make_fixture(fx: dict, out_root: Path) -> dict:
    name, cfg = fx["name"], fx["config"]
    fdir = out_root / name
    vdir = fdir / "vae"
    if vdir.exists():
        for p in sorted(vdir.iterdir()):
            p.unlink()
    fdir.mkdir(parents=True, exist_ok=True)

    vae = build_model(fx)
    sd = {k: v.detach().clone().contiguous() for k, v in vae.state_dict().items()}

    # ---- 1. diffusers folder
    vae.save_pretrained(vdir, safe_serialization=True)
    assert sorted(p.name for p in vdir.iterdir()) == ["config.json", "diffusion_pytorch_model.safetensors"]

    # ---- 2. LDM single file, checked both ways with diffusers
    nblocks = len(cfg["block_out_channels"])
    ldm = diffusers_to_ldm(sd, nblocks, fx["ldm_prefix"])
    ldm_path = fdir / f"{name}_ldm.safetensors"
    save_file(ldm, str(ldm_path), metadata={"format": "pt"})
    back = convert_ldm_vae_checkpoint(load_file(str(ldm_path)), dict(vae.config))
    assert_state_dicts_equal(sd, back, f"{name}: convert_ldm_vae_checkpoint")
    from_single = AutoencoderKL.from_single_file(str(ldm_path), config=str(vdir), local_files_only=True,
                                                 torch_dtype=torch.float32).eval()
    assert_state_dicts_equal(sd, dict(from_single.state_dict()), f"{name}: from_single_file")
    re_dif = AutoencoderKL.from_pretrained(str(vdir), torch_dtype=torch.float32, local_files_only=True).eval()
    assert_state_dicts_equal(sd, dict(re_dif.state_dict()), f"{name}: from_pretrained")

    # ---- 3. decodes
    gen = torch.Generator().manual_seed(fx["seed"] + 1)
    latents = torch.randn(fx["latents"], generator=gen)
    io = {"latents": latents}
    io.update(decode_with_hooks(vae, latents))
    single_diff = float((decode(from_single, latents) - io["decoded"]).abs().max())
    assert single_diff <= 1e-5, f"{name}: from_single_file decode differs by {single_diff}"
    io["image"] = pipeline_image(vae, latents)
    if fx["latents_b2"]:
        lb2 = torch.randn(fx["latents_b2"], generator=gen)
        io["latents_b2"] = lb2
        io["decoded_b2"] = decode(vae, lb2)
        io["image_b2"] = pipeline_image(vae, lb2)
    if fx["tiled"]:
        tiled = AutoencoderKL.from_pretrained(str(vdir), torch_dtype=torch.float32, local_files_only=True).eval()
        tiled.enable_tiling()
        assert latents.shape[-1] > tiled.tile_latent_min_size, "latents too small to be tiled"
        io["decoded_tiled"] = decode(tiled, latents)
        assert io["decoded_tiled"].shape == io["decoded"].shape
        tiling = dict(tile_sample_min_size=tiled.tile_sample_min_size,
                      tile_latent_min_size=tiled.tile_latent_min_size, tile_overlap_factor=tiled.tile_overlap_factor)
    else:
        tiling = None
    io = {k: v.detach().contiguous() for k, v in io.items()}
    save_file(io, str(fdir / "io.safetensors"), metadata={"format": "pt"})

    dec = io["decoded"]
    img = io["image"].float()
    return dict(
        name=name,
        config=cfg,
        ldm_prefix=fx["ldm_prefix"],
        shapes={k: list(v.shape) for k, v in io.items()},
        decoded_std=float(dec.std()),
        decoded_absmax=float(dec.abs().max()),
        image_clipped=float(((img == 0) | (img == 255)).float().mean()),
        from_single_file_max_diff=single_diff,
        tiling=tiling,
    )


def write_readme(out_root: Path, results: list) -> None:
    lines = [
        "# Tiny VAE decoder fixtures (made by diffusers)",
        "",
        f"Generated by `{REGEN_CMD}` (tools/make_vae_fixtures.py; its docstring says exactly what is done) with",
        f"torch {torch.__version__}, diffusers {diffusers.__version__}, safetensors {safetensors.__version__}, "
        f"numpy {np.__version__}, Python {sys.version.split()[0]}, CPU, float32, one thread.",
        "",
        "Per fixture `<name>/`: `vae/` (diffusers folder: config.json + diffusion_pytorch_model.safetensors),",
        "`<name>_ldm.safetensors` (the same weights in LDM/BFL names, encoder included, checked against diffusers'",
        "`convert_ldm_vae_checkpoint` and `AutoencoderKL.from_single_file`), `io.safetensors` (inputs and outputs,",
        "NCHW except the uint8 images, which are NHWC values 0..255 stored as F16).",
        "",
    ]
    for r in results:
        lines += [
            f"## {r['name']}",
            "",
            f"* config: `{json.dumps(r['config'])}`",
            f"* LDM prefix: `{r['ldm_prefix'] or '(none)'}`",
            f"* io tensors: " + ", ".join(f"`{k}` {v}" for k, v in r["shapes"].items()),
            f"* decoded: std {r['decoded_std']:.3f}, max |x| {r['decoded_absmax']:.3f}; image pixels at 0 or 255: "
            f"{100 * r['image_clipped']:.1f}%",
            f"* from_single_file decode vs the original model: max |diff| {r['from_single_file_max_diff']:.2e}",
        ]
        if r["tiling"]:
            lines.append(f"* tiling (enable_tiling): `{json.dumps(r['tiling'])}`")
        lines.append("")
    (out_root / "README.md").write_text("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "tests" / "fixtures" / "vae")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    args.out.mkdir(parents=True, exist_ok=True)
    results = [make_fixture(fx, args.out) for fx in FIXTURES]
    write_readme(args.out, results)
    total = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    for p in sorted(args.out.rglob("*")):
        if p.is_file():
            print(f"{p.stat().st_size:>9}  {p.relative_to(args.out)}")
    print(f"{total:>9}  total")
    assert total < SIZE_LIMIT, f"fixtures take {total} bytes, over the {SIZE_LIMIT} budget"


if __name__ == "__main__":
    main()
