#!/usr/bin/env python3
"""Make the tiny FLUX.1 test fixtures under tests/fixtures/ with the real diffusers classes.

Regenerate (from the repository root; CPU only, no network needed once the packages are installed):

    python3 -m venv /work/venv-fixtures
    /work/venv-fixtures/bin/pip install -r tools/requirements-fixtures.txt
    /work/venv-fixtures/bin/python tools/make_fixtures.py

Options: `--out DIR` (default: tests/fixtures next to this script's parent).

What it does, per fixture (flux_dev_tiny, flux_schnell_tiny):
  1. builds a tiny `diffusers.FluxTransformer2DModel` and re-initialises EVERY parameter from a fixed seed
     (Linear weights ~ N(0, 1/fan_in), biases ~ N(0, 0.1^2), RMSNorm weights ~ 1 + N(0, 0.1^2)) so that nothing
     is zero and activations stay O(1);
  2. saves it as a diffusers folder (<name>/transformer/, save_pretrained, safetensors; the dev one sharded) and as a
     BFL/ComfyUI single file (<name>/<name>_bfl.safetensors) made by the exact inverse of diffusers'
     `convert_flux_transformer_checkpoint_to_diffusers`, and verifies both by loading them back with diffusers
     (`from_pretrained` and `from_single_file`): state dicts must match bit for bit, outputs to 1e-5;
  3. runs one float32 CPU forward pass with forward hooks and writes inputs, intermediates and the output to
     <name>/io.safetensors;
  4. writes tests/fixtures/README.md describing all of it.

Everything is deterministic: fixed seeds, float32, CPU, one thread.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
from pathlib import Path

# Never touch the network: everything is local.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import diffusers  # noqa: E402
import huggingface_hub  # noqa: E402
import safetensors  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from diffusers import FluxTransformer2DModel  # noqa: E402
from diffusers.loaders import single_file_model, single_file_utils  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
REGEN_CMD = "/work/venv-fixtures/bin/python tools/make_fixtures.py"

# --------------------------------------------------------------------------------------------------------------------
# Fixture definitions
# --------------------------------------------------------------------------------------------------------------------
FIXTURES = [
    dict(
        name="flux_dev_tiny",
        seed=1234,
        config=dict(
            patch_size=1,
            in_channels=64,
            out_channels=None,
            num_layers=2,
            num_single_layers=3,
            attention_head_dim=16,
            num_attention_heads=3,
            joint_attention_dim=40,
            pooled_projection_dim=24,
            guidance_embeds=True,
            axes_dims_rope=[4, 6, 6],
        ),
        batch=1,
        grid_h=4,
        grid_w=4,
        text_len=8,
        timestep=[0.73],
        guidance=[3.5],
        bfl_prefix="model.diffusion_model.",
        max_shard_size="300KB",  # forces diffusion_pytorch_model.safetensors.index.json + several shards
    ),
    dict(
        name="flux_schnell_tiny",
        seed=5678,
        config=dict(
            patch_size=1,
            in_channels=64,
            out_channels=None,
            num_layers=1,
            num_single_layers=2,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=40,
            pooled_projection_dim=24,
            guidance_embeds=False,
            axes_dims_rope=[4, 6, 6],
        ),
        batch=2,
        grid_h=3,  # non-square on purpose: img_ids row index < 3, column index < 5
        grid_w=5,
        text_len=7,
        timestep=[0.73, 0.41],
        guidance=None,
        bfl_prefix="",
        max_shard_size="100GB",  # one file: diffusion_pytorch_model.safetensors
    ),
]


# --------------------------------------------------------------------------------------------------------------------
# Model construction and re-initialisation
# --------------------------------------------------------------------------------------------------------------------
def reinit_parameters(model: torch.nn.Module, seed: int) -> None:
    """Give every parameter a non-zero random value (deterministic, module order)."""
    gen = torch.Generator().manual_seed(seed)
    done = set()
    with torch.no_grad():
        for mod_name, mod in model.named_modules():
            if isinstance(mod, torch.nn.Linear):
                fan_in = mod.weight.shape[1]
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=gen) / fan_in**0.5)
                done.add(id(mod.weight))
                if mod.bias is not None:
                    mod.bias.copy_(0.1 * torch.randn(mod.bias.shape, generator=gen))
                    done.add(id(mod.bias))
            elif isinstance(mod, (torch.nn.RMSNorm, torch.nn.LayerNorm)) or type(mod).__name__ in (
                "RMSNorm",
                "LayerNorm",
            ):
                w = getattr(mod, "weight", None)
                if w is not None:
                    w.copy_(1.0 + 0.1 * torch.randn(w.shape, generator=gen))
                    done.add(id(w))
                b = getattr(mod, "bias", None)
                if b is not None:
                    b.copy_(0.1 * torch.randn(b.shape, generator=gen))
                    done.add(id(b))
    for name, p in model.named_parameters():
        assert id(p) in done, f"parameter {name} was not re-initialised"
        assert p.dtype == torch.float32, name
        assert bool((p != 0).all()), f"parameter {name} has an exact zero"
        assert bool(torch.isfinite(p).all()), name


def build_model(fx: dict) -> FluxTransformer2DModel:
    torch.manual_seed(fx["seed"])
    model = FluxTransformer2DModel(**fx["config"])
    reinit_parameters(model, fx["seed"])
    return model.to(torch.float32).eval()


# --------------------------------------------------------------------------------------------------------------------
# diffusers -> BFL (exact inverse of diffusers.loaders.single_file_utils.convert_flux_transformer_checkpoint_to_diffusers)
# --------------------------------------------------------------------------------------------------------------------
def diffusers_to_bfl(sd: dict, num_layers: int, num_single_layers: int, prefix: str) -> dict:
    sd = {k: v.clone() for k, v in sd.items()}
    out = {}

    def take(k):
        return sd.pop(k)

    def lin(bfl, dif):
        out[f"{bfl}.weight"] = take(f"{dif}.weight")
        out[f"{bfl}.bias"] = take(f"{dif}.bias")

    lin("time_in.in_layer", "time_text_embed.timestep_embedder.linear_1")
    lin("time_in.out_layer", "time_text_embed.timestep_embedder.linear_2")
    lin("vector_in.in_layer", "time_text_embed.text_embedder.linear_1")
    lin("vector_in.out_layer", "time_text_embed.text_embedder.linear_2")
    if "time_text_embed.guidance_embedder.linear_1.weight" in sd:
        lin("guidance_in.in_layer", "time_text_embed.guidance_embedder.linear_1")
        lin("guidance_in.out_layer", "time_text_embed.guidance_embedder.linear_2")
    lin("txt_in", "context_embedder")
    lin("img_in", "x_embedder")

    for i in range(num_layers):
        d, b = f"transformer_blocks.{i}.", f"double_blocks.{i}."
        lin(b + "img_mod.lin", d + "norm1.linear")
        lin(b + "txt_mod.lin", d + "norm1_context.linear")
        for part in ("weight", "bias"):
            out[f"{b}img_attn.qkv.{part}"] = torch.cat(
                [take(f"{d}attn.to_q.{part}"), take(f"{d}attn.to_k.{part}"), take(f"{d}attn.to_v.{part}")], dim=0
            )
            out[f"{b}txt_attn.qkv.{part}"] = torch.cat(
                [take(f"{d}attn.add_q_proj.{part}"), take(f"{d}attn.add_k_proj.{part}"),
                 take(f"{d}attn.add_v_proj.{part}")],
                dim=0,
            )
        out[b + "img_attn.norm.query_norm.scale"] = take(d + "attn.norm_q.weight")
        out[b + "img_attn.norm.key_norm.scale"] = take(d + "attn.norm_k.weight")
        out[b + "txt_attn.norm.query_norm.scale"] = take(d + "attn.norm_added_q.weight")
        out[b + "txt_attn.norm.key_norm.scale"] = take(d + "attn.norm_added_k.weight")
        lin(b + "img_mlp.0", d + "ff.net.0.proj")
        lin(b + "img_mlp.2", d + "ff.net.2")
        lin(b + "txt_mlp.0", d + "ff_context.net.0.proj")
        lin(b + "txt_mlp.2", d + "ff_context.net.2")
        lin(b + "img_attn.proj", d + "attn.to_out.0")
        lin(b + "txt_attn.proj", d + "attn.to_add_out")

    for i in range(num_single_layers):
        d, b = f"single_transformer_blocks.{i}.", f"single_blocks.{i}."
        lin(b + "modulation.lin", d + "norm.linear")
        for part in ("weight", "bias"):
            out[f"{b}linear1.{part}"] = torch.cat(
                [take(f"{d}attn.to_q.{part}"), take(f"{d}attn.to_k.{part}"), take(f"{d}attn.to_v.{part}"),
                 take(f"{d}proj_mlp.{part}")],
                dim=0,
            )
        out[b + "norm.query_norm.scale"] = take(d + "attn.norm_q.weight")
        out[b + "norm.key_norm.scale"] = take(d + "attn.norm_k.weight")
        lin(b + "linear2", d + "proj_out")

    lin("final_layer.linear", "proj_out")
    for part in ("weight", "bias"):
        # diffusers norm_out.linear rows are [scale; shift]; BFL final_layer.adaLN_modulation.1 rows are [shift; scale]
        scale, shift = take(f"norm_out.linear.{part}").chunk(2, dim=0)
        out[f"final_layer.adaLN_modulation.1.{part}"] = torch.cat([shift, scale], dim=0)

    assert not sd, f"unconverted diffusers keys: {sorted(sd)}"
    return {prefix + k: v.contiguous() for k, v in out.items()}


# --------------------------------------------------------------------------------------------------------------------
# diffusers' own converter, usable on tiny models
# --------------------------------------------------------------------------------------------------------------------
DIFFUSERS_CONVERTER_NOTE = ""


def tiny_capable_diffusers_converter():
    """diffusers' convert_flux_transformer_checkpoint_to_diffusers hard-codes `inner_dim = 3072` (it is only used to
    split single_blocks.*.linear1 into q/k/v/mlp), so as shipped it cannot convert a model of another width. We take
    its exact source and change only that one line to read the width from img_in.weight; everything else is
    diffusers' code verbatim."""
    global DIFFUSERS_CONVERTER_NOTE
    orig = single_file_utils.convert_flux_transformer_checkpoint_to_diffusers
    src = inspect.getsource(orig)
    needle = "    inner_dim = 3072\n"
    if src.count(needle) == 0:
        DIFFUSERS_CONVERTER_NOTE = "diffusers' converter used unmodified (no hard-coded inner_dim found)."
        return orig
    assert src.count(needle) == 1, "unexpected converter source"
    src = src.replace(needle, '    inner_dim = checkpoint["img_in.weight"].shape[0]  # patched: was 3072\n')
    ns = dict(vars(single_file_utils))
    exec(compile(src, single_file_utils.__file__ + " (patched copy)", "exec"), ns)
    DIFFUSERS_CONVERTER_NOTE = (
        "diffusers' `convert_flux_transformer_checkpoint_to_diffusers` hard-codes `inner_dim = 3072` (used to split "
        "`single_blocks.*.linear1`), so the shipped function raises on these tiny models; the script runs an exact "
        "copy of its source with only that line changed to `inner_dim = img_in.weight.shape[0]`, and plugs it into "
        "`FluxTransformer2DModel.from_single_file` for the check."
    )
    return ns["convert_flux_transformer_checkpoint_to_diffusers"]


def check_unpatched_converter_fails(bfl_sd: dict) -> str:
    try:
        single_file_utils.convert_flux_transformer_checkpoint_to_diffusers(dict(bfl_sd))
    except Exception as e:  # noqa: BLE001
        return f"{type(e).__name__}: {e}"
    return "none (converted fine)"


# --------------------------------------------------------------------------------------------------------------------
# Inputs, hooks, forward
# --------------------------------------------------------------------------------------------------------------------
def prepare_latent_image_ids(height: int, width: int) -> torch.Tensor:
    """Verbatim FluxPipeline._prepare_latent_image_ids: ids[r*w + c] = (0, r, c)."""
    latent_image_ids = torch.zeros(height, width, 3)
    latent_image_ids[..., 1] = latent_image_ids[..., 1] + torch.arange(height)[:, None]
    latent_image_ids[..., 2] = latent_image_ids[..., 2] + torch.arange(width)[None, :]
    return latent_image_ids.reshape(height * width, 3).to(torch.float32)


def make_inputs(fx: dict) -> dict:
    cfg = fx["config"]
    gen = torch.Generator().manual_seed(fx["seed"] + 1)
    B, N, T = fx["batch"], fx["grid_h"] * fx["grid_w"], fx["text_len"]
    inp = {
        "hidden_states": torch.randn(B, N, cfg["in_channels"], generator=gen),
        "encoder_hidden_states": torch.randn(B, T, cfg["joint_attention_dim"], generator=gen),
        "pooled_projections": torch.randn(B, cfg["pooled_projection_dim"], generator=gen),
        "timestep": torch.tensor(fx["timestep"], dtype=torch.float32),
        "img_ids": prepare_latent_image_ids(fx["grid_h"], fx["grid_w"]),
        "txt_ids": torch.zeros(T, 3, dtype=torch.float32),
    }
    if fx["guidance"] is not None:
        inp["guidance"] = torch.tensor(fx["guidance"], dtype=torch.float32)
    assert inp["timestep"].shape == (B,)
    return inp


def forward(model, inp: dict) -> torch.Tensor:
    with torch.no_grad():
        return model(
            hidden_states=inp["hidden_states"],
            encoder_hidden_states=inp["encoder_hidden_states"],
            pooled_projections=inp["pooled_projections"],
            timestep=inp["timestep"],
            img_ids=inp["img_ids"],
            txt_ids=inp["txt_ids"],
            guidance=inp.get("guidance"),
            return_dict=False,
        )[0]


def forward_with_hooks(model, inp: dict) -> dict:
    cap = {}
    hooks = []

    def hook(name, fn):
        def h(_mod, _args, out):
            for k, v in fn(out).items():
                assert k not in cap, k
                cap[k] = v.detach().clone()

        return h

    def reg(mod, name, fn):
        hooks.append(mod.register_forward_hook(hook(name, fn)))

    reg(model.x_embedder, "x_embedder", lambda o: {"x_embedder_out": o})
    reg(model.context_embedder, "context_embedder", lambda o: {"context_embedder_out": o})
    reg(model.time_text_embed, "time_text_embed", lambda o: {"temb": o})
    # FluxPosEmbed returns (freqs_cos, freqs_sin), each [T+N, head_dim] (text rows first).
    reg(model.pos_embed, "pos_embed", lambda o: {"rope_cos": o[0], "rope_sin": o[1]})
    # FluxTransformerBlock returns (encoder_hidden_states, hidden_states) = (text [B,T,D], image [B,N,D]).
    reg(model.transformer_blocks[0], "double0", lambda o: {"double0_encoder": o[0], "double0_hidden": o[1]})
    # FluxSingleTransformerBlock (diffusers 0.42) takes the two streams separately, concatenates them internally as
    # cat(text, image) along the sequence, and returns the split result (encoder_hidden_states [B,T,D],
    # hidden_states [B,N,D]). We store both pieces and single0_out = cat(text, image) = [B, T+N, D], i.e. the joint
    # residual stream after single block 0 exactly as it is inside the block (text tokens first).
    reg(
        model.single_transformer_blocks[0],
        "single0",
        lambda o: {
            "single0_encoder": o[0],
            "single0_hidden": o[1],
            "single0_out": torch.cat([o[0], o[1]], dim=1),
        },
    )
    # AdaLayerNormContinuous output (image tokens only), i.e. the input of the final proj_out.
    reg(model.norm_out, "norm_out", lambda o: {"norm_out_out": o})
    try:
        out = forward(model, inp)
    finally:
        for h in hooks:
            h.remove()
    cap["output"] = out.detach().clone()
    return cap


# --------------------------------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------------------------------
def assert_state_dicts_equal(a: dict, b: dict, what: str) -> None:
    assert set(a) == set(b), f"{what}: key sets differ: {sorted(set(a) ^ set(b))}"
    for k in a:
        assert a[k].shape == b[k].shape, f"{what}: {k} shape {a[k].shape} vs {b[k].shape}"
        assert a[k].dtype == b[k].dtype, f"{what}: {k} dtype {a[k].dtype} vs {b[k].dtype}"
        assert torch.equal(a[k], b[k]), f"{what}: {k} differs"


def assert_outputs_close(a: torch.Tensor, b: torch.Tensor, what: str) -> float:
    """Reloaded weights are bit-identical, but safetensors hands back tensors at other memory alignments, which
    changes CPU GEMM summation order: outputs then differ in the last bits (~1e-6), so compare with a tolerance."""
    diff = float((a - b).abs().max())
    assert torch.allclose(a, b, rtol=1e-5, atol=1e-5), f"{what}: output differs by {diff}"
    return diff


def file_sizes(root: Path) -> list:
    return sorted((str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*") if p.is_file())


# --------------------------------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------------------------------
def make_fixture(fx: dict, out_root: Path, converter) -> dict:
    name, cfg = fx["name"], fx["config"]
    fdir = out_root / name
    tdir = fdir / "transformer"
    if tdir.exists():
        for p in sorted(tdir.iterdir()):
            p.unlink()
    fdir.mkdir(parents=True, exist_ok=True)

    model = build_model(fx)
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}

    # ---- 1. diffusers folder
    model.save_pretrained(tdir, safe_serialization=True, max_shard_size=fx["max_shard_size"])
    shards = sorted(p.name for p in tdir.glob("*.safetensors"))
    if fx["max_shard_size"] != "100GB":
        assert (tdir / "diffusion_pytorch_model.safetensors.index.json").exists()
        assert len(shards) >= 2, shards
    else:
        assert shards == ["diffusion_pytorch_model.safetensors"], shards

    # ---- 2. BFL single file
    bfl = diffusers_to_bfl(sd, cfg["num_layers"], cfg["num_single_layers"], fx["bfl_prefix"])
    bfl_path = fdir / f"{name}_bfl.safetensors"
    save_file(bfl, str(bfl_path), metadata={"format": "pt"})

    # ---- inputs and forward with hooks
    inp = make_inputs(fx)
    cap = forward_with_hooks(model, inp)

    # ---- verification: reload both layouts with diffusers and compare exactly
    re_dif = FluxTransformer2DModel.from_pretrained(str(tdir), torch_dtype=torch.float32, local_files_only=True).eval()
    assert_state_dicts_equal(sd, dict(re_dif.state_dict()), f"{name}: from_pretrained")
    diff_pretrained = assert_outputs_close(forward(re_dif, inp), cap["output"], f"{name}: from_pretrained")

    # diffusers' converter directly on the BFL file (with the prefix, as stored)
    conv = converter(load_file(str(bfl_path)))
    assert_state_dicts_equal(sd, conv, f"{name}: convert_flux_transformer_checkpoint_to_diffusers")
    unpatched_err = check_unpatched_converter_fails(load_file(str(bfl_path)))

    # full diffusers single-file loader, config from our own diffusers folder
    mapping = single_file_model.SINGLE_FILE_LOADABLE_CLASSES["FluxTransformer2DModel"]
    saved_fn = mapping["checkpoint_mapping_fn"]
    mapping["checkpoint_mapping_fn"] = converter
    try:
        re_bfl = FluxTransformer2DModel.from_single_file(
            str(bfl_path), config=str(fdir), subfolder="transformer", torch_dtype=torch.float32, local_files_only=True
        ).eval()
    finally:
        mapping["checkpoint_mapping_fn"] = saved_fn
    assert_state_dicts_equal(sd, dict(re_bfl.state_dict()), f"{name}: from_single_file")
    diff_single = assert_outputs_close(forward(re_bfl, inp), cap["output"], f"{name}: from_single_file")

    # determinism: a second forward of the original model gives identical bits
    assert torch.equal(forward(model, inp), cap["output"])

    # ---- 3. io.safetensors
    io = dict(inp)
    io.update(cap)
    B, N, T = fx["batch"], fx["grid_h"] * fx["grid_w"], fx["text_len"]
    D = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    expect = {
        "hidden_states": (B, N, cfg["in_channels"]),
        "encoder_hidden_states": (B, T, cfg["joint_attention_dim"]),
        "pooled_projections": (B, cfg["pooled_projection_dim"]),
        "timestep": (B,),
        "img_ids": (N, 3),
        "txt_ids": (T, 3),
        "x_embedder_out": (B, N, D),
        "context_embedder_out": (B, T, D),
        "temb": (B, D),
        "rope_cos": (T + N, cfg["attention_head_dim"]),
        "rope_sin": (T + N, cfg["attention_head_dim"]),
        "double0_encoder": (B, T, D),
        "double0_hidden": (B, N, D),
        "single0_encoder": (B, T, D),
        "single0_hidden": (B, N, D),
        "single0_out": (B, T + N, D),
        "norm_out_out": (B, N, D),
        "output": (B, N, cfg["in_channels"]),
    }
    if fx["guidance"] is not None:
        expect["guidance"] = (B,)
    assert set(io) == set(expect), sorted(set(io) ^ set(expect))
    for k, shp in expect.items():
        assert tuple(io[k].shape) == shp, (k, tuple(io[k].shape), shp)
        assert io[k].dtype == torch.float32, k
        assert bool(torch.isfinite(io[k]).all()), k
    for k in ("hidden_states", "encoder_hidden_states", "pooled_projections", "temb", "output", "single0_out"):
        assert bool((io[k] != 0).all()), k
    if B > 1:  # batch elements really differ
        assert not torch.equal(io["output"][0], io["output"][1])
    io = {k: v.contiguous() for k, v in io.items()}
    # One metadata key only: safetensors writes the metadata map in hash order, so several keys would make the
    # file bytes differ from run to run (the tensors would not).
    meta = {
        "fixture": json.dumps(
            dict(name=name, config=cfg, batch=B, grid_h=fx["grid_h"], grid_w=fx["grid_w"], text_len=T,
                 diffusers=diffusers.__version__, torch=torch.__version__),
            sort_keys=True,
        )
    }
    save_file(io, str(fdir / "io.safetensors"), metadata=meta)

    stats = {k: (tuple(v.shape), float(v.abs().max()), float(v.float().std()) if v.numel() > 1 else 0.0)
             for k, v in io.items()}
    return dict(name=name, fx=fx, shards=shards, bfl_keys=len(bfl), dif_keys=len(sd), io=stats,
                unpatched_err=unpatched_err, diff_pretrained=diff_pretrained, diff_single=diff_single, n_params=sum(v.numel() for v in sd.values()))


README_TENSORS = [
    ("hidden_states", "[B,N,64]", "input: packed latents (image tokens), ~N(0,1)"),
    ("encoder_hidden_states", "[B,T,joint]", "input: text states (T5 stand-in), ~N(0,1)"),
    ("pooled_projections", "[B,pooled]", "input: pooled text vector (CLIP stand-in), ~N(0,1)"),
    ("timestep", "[B]", "input: sigma in (0,1) as FluxPipeline passes it (`t/1000`); the model multiplies by 1000"),
    ("guidance", "[B]", "input (dev only): guidance scale (3.5); the model multiplies by 1000 -> 3500"),
    ("img_ids", "[N,3]", "input: (0, row, col) for token row*w+col, FluxPipeline._prepare_latent_image_ids"),
    ("txt_ids", "[T,3]", "input: zeros"),
    ("x_embedder_out", "[B,N,D]", "x_embedder(hidden_states)"),
    ("context_embedder_out", "[B,T,D]", "context_embedder(encoder_hidden_states)"),
    ("temb", "[B,D]", "time_text_embed output = t_emb(1000*timestep) [+ g_emb(1000*guidance)] + text_embedder(pooled)"),
    ("rope_cos", "[T+N,head_dim]", "pos_embed(cat(txt_ids, img_ids))[0]: text rows first; per axis (4,6,6 lanes) "
     "cos(pos_a*10000^(-2j/d_a)) with each value repeated twice (interleaved pairs); lanes 0-3 axis 0 "
     "(always position 0, so cos 1 / sin 0), lanes 4-9 axis 1 (row), lanes 10-15 axis 2 (column)"),
    ("rope_sin", "[T+N,head_dim]", "same, sin"),
    ("double0_encoder", "[B,T,D]", "transformer_blocks[0] output, text stream"),
    ("double0_hidden", "[B,N,D]", "transformer_blocks[0] output, image stream"),
    ("single0_encoder", "[B,T,D]", "single_transformer_blocks[0] output, text part"),
    ("single0_hidden", "[B,N,D]", "single_transformer_blocks[0] output, image part"),
    ("single0_out", "[B,T+N,D]", "cat(single0_encoder, single0_hidden) on the sequence axis = the joint stream "
     "after single block 0 as BFL's SingleStreamBlock sees it (text first)"),
    ("norm_out_out", "[B,N,D]", "norm_out(hidden, temb) (AdaLayerNormContinuous), the input of the final proj_out"),
    ("output", "[B,N,64]", "model(..., return_dict=False)[0], predicted velocity in packed latent space"),
]


def write_readme(out_root: Path, results: list) -> None:
    L = []
    L.append("# Test fixtures: tiny random FLUX.1 transformers\n")
    L.append("**These are random, tiny models** (88k and 320k parameters, random weights). They exercise the "
             "real diffusers `FluxTransformer2DModel` code path and file layouts; their outputs mean nothing as "
             "images. Do not edit by hand: regenerate.\n")
    L.append("## How they were made\n")
    L.append("```\npython3 -m venv /work/venv-fixtures\n/work/venv-fixtures/bin/pip install -r "
             f"tools/requirements-fixtures.txt\n{REGEN_CMD}      # from the repository root\n```\n")
    L.append(f"Versions: python {sys.version.split()[0]}, torch {torch.__version__}, diffusers "
             f"{diffusers.__version__}, safetensors {safetensors.__version__}, huggingface_hub "
             f"{huggingface_hub.__version__}, numpy {np.__version__}. CPU, float32, one thread, fixed seeds "
             "(the script is deterministic: rerunning it rewrites identical tensors).\n")
    L.append("Every parameter is re-initialised: Linear weights ~ N(0, 1/fan_in), Linear biases ~ N(0, 0.01), "
             "RMSNorm (q/k norm) weights ~ 1 + N(0, 0.01); no parameter is zero.\n")
    L.append("## Fixtures\n")
    L.append("| fixture | config | inputs | diffusers folder | BFL single file |")
    L.append("|---|---|---|---|---|")
    for r in results:
        fx, c = r["fx"], r["fx"]["config"]
        D = c["num_attention_heads"] * c["attention_head_dim"]
        cfgs = (f"guidance_embeds={c['guidance_embeds']}, num_layers={c['num_layers']}, "
                f"num_single_layers={c['num_single_layers']}, heads={c['num_attention_heads']}x"
                f"{c['attention_head_dim']} (D={D}), joint_attention_dim={c['joint_attention_dim']}, "
                f"pooled_projection_dim={c['pooled_projection_dim']}, axes_dims_rope={c['axes_dims_rope']}, "
                f"patch_size=1, in_channels=64, out_channels=None; {r['n_params']} params")
        ins = (f"B={fx['batch']}, grid h={fx['grid_h']} w={fx['grid_w']} (N={fx['grid_h'] * fx['grid_w']}), "
               f"T={fx['text_len']}, timestep={fx['timestep']}" +
               (f", guidance={fx['guidance']}" if fx["guidance"] is not None else ""))
        shard = ("sharded: `diffusion_pytorch_model.safetensors.index.json` + " + ", ".join(f"`{s}`" for s in r["shards"])
                 if len(r["shards"]) > 1 else "`diffusion_pytorch_model.safetensors` (one file)")
        pref = f"keys prefixed `{fx['bfl_prefix']}`" if fx["bfl_prefix"] else "no key prefix"
        L.append(f"| `{r['name']}` | {cfgs} | {ins} | `{r['name']}/transformer/`: `config.json`, {shard} | "
                 f"`{r['name']}/{r['name']}_bfl.safetensors`, {pref}, {r['bfl_keys']} tensors |")
    L.append("")
    L.append("The BFL/ComfyUI file is the exact inverse of diffusers' `convert_flux_transformer_checkpoint_to_diffusers` "
             "(fused `img_attn.qkv`/`txt_attn.qkv` = rows [q;k;v], `single_blocks.i.linear1` = rows [q;k;v;proj_mlp], "
             "`final_layer.adaLN_modulation.1` = rows [shift;scale] where diffusers' `norm_out.linear` is "
             "[scale;shift]). The script verifies both layouts by loading them back with diffusers "
             "(`from_pretrained`, `from_single_file` with `config=<fixture dir>, subfolder=\"transformer\"`): state "
             "dicts match bit for bit and forward outputs to 1e-5 (they differ only in the last bits, from the "
             "memory alignment of the loaded tensors changing the CPU GEMM summation order).\n")
    L.append(f"Note: {DIFFUSERS_CONVERTER_NOTE}\n")
    L.append("## io.safetensors (all float32)\n")
    L.append("B batch, N = h*w image tokens, T text tokens, D = heads*head_dim. Inputs are exactly the arguments of "
             "`FluxTransformer2DModel.forward`; intermediates come from forward hooks. The header metadata has one "
             "key, `fixture`, a JSON object with the name, config, batch, grid_h, grid_w, text_len and versions.\n")
    L.append("| tensor | shape | meaning |")
    L.append("|---|---|---|")
    for k, s, m in README_TENSORS:
        L.append(f"| `{k}` | {s} | {m} |")
    L.append("")
    for r in results:
        L.append(f"Shapes in `{r['name']}/io.safetensors`:\n")
        L.append("| tensor | shape | max abs | std |")
        L.append("|---|---|---|---|")
        for k, (shp, mx, sd) in r["io"].items():
            L.append(f"| `{k}` | {list(shp)} | {mx:.4g} | {sd:.4g} |")
        L.append("")
    L.append("## Facts of the diffusers code worth knowing when matching it\n")
    L.append("* `timestep` and `guidance` are multiplied by 1000 inside `FluxTransformer2DModel.forward` (after casting "
             "to the hidden dtype); the sinusoid is `get_timestep_embedding(dim 256, flip_sin_to_cos=True, "
             "downscale_freq_shift=0)` = [cos(s*f_k), sin(s*f_k)], f_k = exp(-ln(10000)*k/128). "
             "`temb = timestep_embedder + guidance_embedder + text_embedder` (schnell: no guidance term).")
    L.append("* RoPE ids are `cat(txt_ids, img_ids)` (text first); each axis's angles are computed in float64 and cast "
             "to float32; cos/sin are `repeat_interleave(2)`, so lanes 2k and 2k+1 share one frequency; the rotation "
             "acts on adjacent pairs: y[2k] = x[2k]cos - x[2k+1]sin, y[2k+1] = x[2k+1]cos + x[2k]sin.")
    L.append("* `AdaLayerNormZero` chunks are (shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp); "
             "`AdaLayerNormZeroSingle` (shift, scale, gate); `AdaLayerNormContinuous` (norm_out) **(scale, shift)**, "
             "which is why the BFL final layer has its halves swapped. All modulation Linear layers take SiLU(temb).")
    L.append("* The single-stream block in this diffusers version takes and returns the two streams separately; "
             "it concatenates text-then-image internally. Attention has no mask and no output projection in single "
             "blocks (`proj_out` acts on cat(attn, gelu_tanh(proj_mlp))).")
    L.append("* q/k RMSNorm eps 1e-6 over head_dim with learnable weight; LayerNorms eps 1e-6 without affine.")
    (out_root / "README.md").write_text("\n".join(L) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(REPO_ROOT / "tests" / "fixtures"))
    args = ap.parse_args()
    out_root = Path(args.out)
    out_root.mkdir(parents=True, exist_ok=True)

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    converter = tiny_capable_diffusers_converter()
    results = [make_fixture(fx, out_root, converter) for fx in FIXTURES]
    write_readme(out_root, results)

    print(f"torch {torch.__version__}, diffusers {diffusers.__version__}, safetensors {safetensors.__version__}, "
          f"huggingface_hub {huggingface_hub.__version__}, numpy {np.__version__}")
    print(DIFFUSERS_CONVERTER_NOTE)
    for r in results:
        print(f"\n{r['name']}: {r['n_params']} params, {r['dif_keys']} diffusers tensors, {r['bfl_keys']} BFL tensors")
        print(f"  unpatched diffusers converter on this file: {r['unpatched_err']}")
        print(f"  reload max|output diff|: from_pretrained {r['diff_pretrained']:.3g}, "
              f"from_single_file {r['diff_single']:.3g} (weights bit-identical)")
        for k, (shp, mx, sd) in r["io"].items():
            print(f"  io {k:22s} {str(list(shp)):16s} max|x|={mx:.4g} std={sd:.4g}")
    total = 0
    print()
    for rel, size in file_sizes(out_root):
        total += size
        print(f"  {size:9d}  {rel}")
    print(f"  {total:9d}  total")


if __name__ == "__main__":
    main()
