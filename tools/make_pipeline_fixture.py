#!/usr/bin/env python3
"""Make the tiny random FLUX.1 pipeline: models/tiny-flux (the embedded default) and tests/fixtures/pipeline.

Regenerate (from the repository root; CPU only, no network needed once the packages are installed):

    python3 -m venv /work/venv-pipe
    /work/venv-pipe/bin/pip install torch diffusers transformers sentencepiece protobuf tokenizers safetensors
    /work/venv-pipe/bin/python tools/make_pipeline_fixture.py

What it makes:
  1. a diffusers FluxPipeline built from the real classes at tiny widths: CLIPTextModel + CLIPTokenizer,
     T5EncoderModel + T5TokenizerFast, AutoencoderKL (FLUX.1's structure: 16 latent channels, 4 up blocks, mid
     attention, no quant convs), FluxTransformer2DModel (guidance embedding, as FLUX.1-dev) and
     FlowMatchEulerDiscreteScheduler with FLUX.1-dev's published config. The tokenizer files are the small trained
     ones of tests/fixtures/tokenizers (tools/make_tokenizer_fixtures.py), copied in FLUX.1's layout (tokenizer/:
     vocab.json + merges.txt; tokenizer_2/: spiece.model + tokenizer.json). Every parameter is re-initialised from
     a fixed seed (nothing zero) and rounded to values exact in both bf16 and fp16, so every file below holds the
     very weights the float32 reference ran with;
  2. saves it to models/tiny-flux (weights bf16, as FLUX.1 ships them) with a README saying it is random;
  3. writes single-file versions of the four networks to tests/fixtures/pipeline/: flux1-tiny.safetensors (BFL
     names, bf16), ae.safetensors (LDM names, encoder included, f32), clip_l.safetensors (ComfyUI: text_model.*,
     fp16), t5xxl_fp16.safetensors (ComfyUI: encoder.* + shared.weight, fp16);
  4. loads models/tiny-flux back with FluxPipeline.from_pretrained (float32, CPU) and runs the cases below from
     explicit initial latents; each case's file tests/fixtures/pipeline/<case>.safetensors holds
       latents             the initial packed latents [B, N, 64] (usable as `paradit generate --init-latents`)
       clip_ids, t5_ids    the token ids the tokenizers gave (as exact floats), [1, 77] and [1, max_sequence_length]
       prompt_embeds, pooled_prompt_embeds              encode_prompt's outputs for the prompt, [1, T, 32], [1, 32]
       negative_*          the same for the negative prompt (true-CFG case only)
       final_latents       the packed latents after the last step [B, N, 64]
       image               output_type="np" ×255 rounded (uint8 values stored as F16, exact), NHWC [B, H, W, 3]
     and the call's arguments as JSON in the metadata key "case".

Everything is deterministic: fixed seeds, float32, CPU, one thread.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import diffusers  # noqa: E402
import safetensors  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel  # noqa: E402
from transformers import (  # noqa: E402
    CLIPTextConfig, CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel, T5TokenizerFast)

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))
# The name maps and the weight rounding of the component fixtures, reused so that all fixtures agree.
from make_fixtures import diffusers_to_bfl, reinit_parameters as reinit_transformer  # noqa: E402
from make_text_encoder_fixtures import exact_16bit, randomise  # noqa: E402
from make_vae_fixtures import diffusers_to_ldm, reinit_parameters as reinit_vae  # noqa: E402

REPO_ROOT = TOOLS.parent
REGEN_CMD = "/work/venv-pipe/bin/python tools/make_pipeline_fixture.py"
TOKENIZERS = REPO_ROOT / "tests" / "fixtures" / "tokenizers"
MODEL_SIZE_LIMIT = 4_000_000  # bytes for models/tiny-flux

CLIP_CONFIG = dict(
    vocab_size=2163,  # the trained vocabulary; <|endoftext|> (2162) is the largest id, as 49407 is in CLIP-L
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=77,
    hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=32,
    bos_token_id=0, pad_token_id=1, eos_token_id=2,  # openai/clip-vit-large-patch14's: argmax pooling, as FLUX.1
)
T5_CONFIG = dict(
    vocab_size=1128,  # 1100 tokens padded, as T5's 32128 embedding rows hold 32100 tokens
    d_model=32, d_kv=8, num_heads=4, d_ff=48, num_layers=2, num_decoder_layers=2,
    relative_attention_num_buckets=32, relative_attention_max_distance=128, feed_forward_proj="gated-gelu",
    layer_norm_epsilon=1e-6, dropout_rate=0.0, is_encoder_decoder=False, use_cache=False, pad_token_id=0,
    eos_token_id=1, tie_word_embeddings=False,
)
TRANSFORMER_CONFIG = dict(
    patch_size=1, in_channels=64, out_channels=None, num_layers=2, num_single_layers=2, attention_head_dim=16,
    num_attention_heads=3, joint_attention_dim=32, pooled_projection_dim=32, guidance_embeds=True,
    axes_dims_rope=[4, 6, 6],
)
VAE_CONFIG = dict(
    in_channels=3, out_channels=3, latent_channels=16, block_out_channels=[8, 16, 16, 16], layers_per_block=1,
    down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4, norm_num_groups=4,
    act_fn="silu", sample_size=1024, scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False,
    use_post_quant_conv=False, mid_block_add_attention=True, force_upcast=True,
)
# FLUX.1-dev's scheduler/scheduler_config.json.
SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
    base_image_seq_len=256, max_image_seq_len=4096,
)
# The decoder's last convolution is scaled down so that the random VAE's output mostly stays inside [-1, 1]: a
# mostly clipped image would hide decoder errors from a pixel comparison.
VAE_CONV_OUT_SCALE = 0.25

LONG_PROMPT = (
    "A breathtaking ultra-detailed digital painting of an ancient library hidden inside a giant hollow tree, "
    "warm golden light streaming through stained glass windows, floating books and glowing runes, a small "
    "orange cat wearing round spectacles reading a scroll on a velvet cushion, dust motes in the air, "
    "intricate carved wooden shelves, spiral staircases, moss and ivy creeping over the walls, cinematic "
    "composition, volumetric lighting, depth of field, 8k, trending on artstation, by a master illustrator."
)
CASES = [
    # Non-square, 4 steps, FluxPipeline's defaults otherwise (guidance 3.5, max_sequence_length 512).
    dict(name="base", prompt="a photo of a cat wearing a tiny wizard hat, watercolor", negative_prompt=None,
         width=64, height=48, steps=4, guidance=3.5, true_cfg_scale=1.0, max_sequence_length=512, batch=1, seed=11),
    # True CFG with a negative prompt, two images per prompt.
    dict(name="cfg", prompt="an ancient castle on a mountain at sunset, oil on canvas",
         negative_prompt="blurry, low quality", width=48, height=32, steps=3, guidance=3.5, true_cfg_scale=4.0,
         max_sequence_length=512, batch=2, seed=12),
    # A prompt longer than both tokenizers' limits: CLIP keeps 77 tokens, T5 max_sequence_length.
    dict(name="truncated", prompt=LONG_PROMPT, negative_prompt=None, width=32, height=32, steps=2, guidance=5.0,
         true_cfg_scale=1.0, max_sequence_length=24, batch=1, seed=13),
]


# --------------------------------------------------------------------------------------------------------------------
# Building the pipeline
# --------------------------------------------------------------------------------------------------------------------
@torch.no_grad()
def round_parameters(model: torch.nn.Module) -> None:
    for _, p in model.named_parameters():
        p.copy_(exact_16bit(p.detach().float()))


@torch.no_grad()
def build_transformer() -> FluxTransformer2DModel:
    torch.manual_seed(1)
    model = FluxTransformer2DModel(**TRANSFORMER_CONFIG)
    reinit_transformer(model, 501)  # Linear ~ N(0, 1/fan_in), biases ~ N(0, 0.1^2), norms ~ 1 + N(0, 0.1^2)
    round_parameters(model)
    return model.float().eval()


@torch.no_grad()
def build_vae() -> AutoencoderKL:
    torch.manual_seed(2)
    model = AutoencoderKL(**VAE_CONFIG)
    reinit_vae(model, 502)
    model.decoder.conv_out.weight.mul_(VAE_CONV_OUT_SCALE)
    round_parameters(model)
    return model.float().eval()


@torch.no_grad()
def build_clip() -> CLIPTextModel:
    config = CLIPTextConfig(**CLIP_CONFIG)
    model = CLIPTextModel(config)
    randomise(model, 503)
    return model.float().eval()


@torch.no_grad()
def build_t5() -> T5EncoderModel:
    config = T5Config(**T5_CONFIG)
    model = T5EncoderModel(config)
    randomise(model, 504)
    return model.float().eval()


def check_nonzero(name: str, model: torch.nn.Module) -> None:
    for pname, p in model.named_parameters():
        assert bool((p != 0).all()), f"{name}.{pname} has an exact zero"
        assert torch.equal(p.detach().to(torch.bfloat16).float(), p.detach()), f"{name}.{pname} is not bf16-exact"


def copy_tokenizers(root: Path) -> None:
    """FLUX.1's tokenizer folders hold the original files (vocab.json + merges.txt; spiece.model + tokenizer.json),
    which transformers 5's save_pretrained would not write: copy them instead."""
    for folder, src, files in (
        ("tokenizer", TOKENIZERS / "clip",
         ["vocab.json", "merges.txt", "special_tokens_map.json", "tokenizer_config.json"]),
        ("tokenizer_2", TOKENIZERS / "t5",
         ["spiece.model", "tokenizer.json", "special_tokens_map.json", "tokenizer_config.json"]),
    ):
        dst = root / folder
        if dst.exists():
            shutil.rmtree(dst)
        dst.mkdir(parents=True)
        for f in files:
            shutil.copyfile(src / f, dst / f)


def save_pipeline(root: Path) -> dict:
    if root.exists():
        shutil.rmtree(root)
    tokenizer = CLIPTokenizer.from_pretrained(str(TOKENIZERS / "clip"))
    tokenizer_2 = T5TokenizerFast.from_pretrained(str(TOKENIZERS / "t5"))
    parts = dict(transformer=build_transformer(), vae=build_vae(), text_encoder=build_clip(),
                 text_encoder_2=build_t5())
    for name, model in parts.items():
        check_nonzero(name, model)
    pipe = FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler(**SCHEDULER_CONFIG), tokenizer=tokenizer,
                        tokenizer_2=tokenizer_2, **parts)
    pipe.to(torch.bfloat16).save_pretrained(str(root), safe_serialization=True)
    copy_tokenizers(root)
    index = json.loads((root / "model_index.json").read_text())
    # As FLUX.1's model_index.json names them (transformers 5 has folded the fast classes into the plain names).
    index["tokenizer"] = ["transformers", "CLIPTokenizer"]
    index["tokenizer_2"] = ["transformers", "T5TokenizerFast"]
    (root / "model_index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return {k: {n: t.detach().float().clone() for n, t in m.state_dict().items()} for k, m in parts.items()}


# --------------------------------------------------------------------------------------------------------------------
# Single files
# --------------------------------------------------------------------------------------------------------------------
def save_single_files(states: dict, out: Path) -> list[str]:
    written = []

    def save(name: str, tensors: dict, dtype: torch.dtype) -> None:
        save_file({k: v.to(dtype).contiguous() for k, v in tensors.items()}, str(out / name),
                  metadata={"format": "pt"})
        written.append(name)

    save("flux1-tiny.safetensors",
         diffusers_to_bfl(states["transformer"], TRANSFORMER_CONFIG["num_layers"],
                          TRANSFORMER_CONFIG["num_single_layers"], ""), torch.bfloat16)
    save("ae.safetensors", diffusers_to_ldm(states["vae"], len(VAE_CONFIG["block_out_channels"]), ""), torch.float32)
    clip = {k if k.startswith("text_model.") else "text_model." + k: v for k, v in states["text_encoder"].items()
            if k != "text_model.embeddings.position_ids"}
    save("clip_l.safetensors", clip, torch.float16)
    t5 = {k: v for k, v in states["text_encoder_2"].items() if k != "encoder.embed_tokens.weight"}
    save("t5xxl_fp16.safetensors", t5, torch.float16)
    return written


# --------------------------------------------------------------------------------------------------------------------
# Reference runs
# --------------------------------------------------------------------------------------------------------------------
def load_reference(root: Path, states: dict) -> FluxPipeline:
    pipe = FluxPipeline.from_pretrained(str(root), dtype=torch.float32, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    for name, state in states.items():
        loaded = getattr(pipe, name).state_dict()
        for k, v in state.items():
            assert torch.equal(loaded[k].float(), v), f"{name}.{k} changed on the way through the folder"
    return pipe


def packed_noise(case: dict) -> torch.Tensor:
    h, w = case["height"] // 16, case["width"] // 16
    g = torch.Generator().manual_seed(case["seed"])
    unpacked = torch.randn([case["batch"], 16, 2 * h, 2 * w], generator=g)
    return FluxPipeline._pack_latents(unpacked, case["batch"], 16, 2 * h, 2 * w)


def token_ids(pipe: FluxPipeline, prompt: str, max_sequence_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    clip = pipe.tokenizer(prompt, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
    t5 = pipe.tokenizer_2(prompt, padding="max_length", max_length=max_sequence_length, truncation=True,
                          return_tensors="pt")
    return clip.input_ids.float(), t5.input_ids.float()


@torch.no_grad()
def run_case(pipe: FluxPipeline, case: dict, out: Path) -> dict:
    latents = packed_noise(case)
    io = {"latents": latents.clone()}
    prompts = [("", case["prompt"])]
    if case["negative_prompt"] is not None:
        prompts.append(("negative_", case["negative_prompt"]))
    for prefix, text in prompts:
        embeds, pooled, _ = pipe.encode_prompt(prompt=text, prompt_2=None,
                                               max_sequence_length=case["max_sequence_length"])
        clip_ids, t5_ids = token_ids(pipe, text, case["max_sequence_length"])
        io.update({f"{prefix}clip_ids": clip_ids, f"{prefix}t5_ids": t5_ids, f"{prefix}prompt_embeds": embeds,
                   f"{prefix}pooled_prompt_embeds": pooled})

    final = {}

    def keep_last(_pipe, i, _t, kw):
        if i == case["steps"] - 1:
            final["latents"] = kw["latents"].clone()
        return {}

    images = pipe(prompt=case["prompt"], negative_prompt=case["negative_prompt"],
                  true_cfg_scale=case["true_cfg_scale"], height=case["height"], width=case["width"],
                  num_inference_steps=case["steps"], guidance_scale=case["guidance"],
                  num_images_per_prompt=case["batch"], latents=latents,
                  max_sequence_length=case["max_sequence_length"], output_type="np",
                  callback_on_step_end=keep_last).images
    u8 = (images * 255).round().astype("uint8")  # what numpy_to_pil does
    io["final_latents"] = final["latents"]
    io["image"] = torch.from_numpy(u8.astype(np.float16))
    save_file({k: v.contiguous() for k, v in io.items()}, str(out / f"{case['name']}.safetensors"),
              metadata={"case": json.dumps(case)})
    img = u8.astype(np.float64)
    return dict(case=case, shapes={k: list(v.shape) for k, v in io.items()},
                clipped=float(((img == 0) | (img == 255)).mean()), mean=float(img.mean()), std=float(img.std()))


# --------------------------------------------------------------------------------------------------------------------
# READMEs
# --------------------------------------------------------------------------------------------------------------------
def versions() -> str:
    return (f"Python {sys.version.split()[0]}, torch {torch.__version__}, diffusers {diffusers.__version__}, "
            f"transformers {transformers.__version__}, safetensors {safetensors.__version__}, numpy {np.__version__}")


def params(states: dict) -> str:
    return ", ".join(f"{k} {sum(v.numel() for v in s.values()):,}" for k, s in states.items())


def write_model_readme(root: Path, states: dict) -> None:
    text = f"""# tiny-flux: a tiny FLUX.1 pipeline with RANDOM weights

**This model is random.** Its images are coloured noise: it exists so that `paradit generate -p "..."` runs
the whole FLUX.1 text-to-image path (tokenizers, CLIP, T5, transformer, scheduler, VAE, PNG) on a fresh machine
in seconds, with no download, and so that tests can compare paradit with diffusers on real file layouts.

It is a diffusers `FluxPipeline` folder (`model_index.json`, FLUX.1-dev's layout and scheduler config) built
from the real classes at tiny widths by `{REGEN_CMD}`; do not edit by hand.

* transformer: `FluxTransformer2DModel`, {TRANSFORMER_CONFIG['num_layers']} double + \
{TRANSFORMER_CONFIG['num_single_layers']} single blocks, {TRANSFORMER_CONFIG['num_attention_heads']} heads x \
{TRANSFORMER_CONFIG['attention_head_dim']}, guidance embedding (FLUX.1-dev's variant)
* vae: `AutoencoderKL`, FLUX.1's structure (16 latent channels, scaling 0.3611, shift 0.1159), widths \
{VAE_CONFIG['block_out_channels']}
* text_encoder: `CLIPTextModel`, hidden {CLIP_CONFIG['hidden_size']}, {CLIP_CONFIG['num_hidden_layers']} layers
* text_encoder_2: `T5EncoderModel` (v1.1, gated-GELU), d_model {T5_CONFIG['d_model']}, \
{T5_CONFIG['num_layers']} layers
* tokenizer, tokenizer_2: small CLIP BPE and T5 SentencePiece vocabularies trained by \
tools/make_tokenizer_fixtures.py (not CLIP's or T5's)
* scheduler: `FlowMatchEulerDiscreteScheduler`, FLUX.1-dev's config

Parameters: {params(states)}. Weights are bf16, every value exact in fp16 too. Made with {versions()}.
"""
    (root / "README.md").write_text(text)


def write_fixture_readme(out: Path, single_files: list[str], results: list[dict]) -> None:
    lines = [
        "# Pipeline fixtures: diffusers FluxPipeline runs of models/tiny-flux",
        "",
        f"Made by `{REGEN_CMD}` (its docstring says exactly what is done) with {versions()}; CPU, float32, "
        "one thread. The pipeline is models/tiny-flux (random weights).",
        "",
        "Single files of the same weights (what `--diffusion-model`, `--vae`, `--clip_l`, `--t5xxl` take): "
        + ", ".join(f"`{f}`" for f in single_files) + ". Their tiny widths cannot be inferred from shapes "
        "alone (FLUX.1's are), so loading them needs the configs of models/tiny-flux.",
        "",
        "| case | arguments | tensors | image |",
        "|---|---|---|---|",
    ]
    for r in results:
        c = r["case"]
        args = ", ".join(f"{k}={c[k]!r}" for k in c if k not in ("name", "prompt")) + f", prompt={c['prompt'][:40]!r}…"
        tensors = ", ".join(f"`{k}` {v}" for k, v in r["shapes"].items())
        lines.append(f"| `{c['name']}` | {args} | {tensors} | mean {r['mean']:.1f}, std {r['std']:.1f}, "
                     f"{100 * r['clipped']:.1f}% at 0 or 255 |")
    lines += ["", "`latents` is the packed initial noise (torch.randn with the case's seed, then _pack_latents), passed "
              "to the pipeline as `latents=`; `final_latents` was taken by callback_on_step_end at the last step; "
              "`image` is output_type=\"np\" ×255 rounded half to even, stored as F16 (exact).", ""]
    (out / "README.md").write_text("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model-out", type=Path, default=REPO_ROOT / "models" / "tiny-flux")
    ap.add_argument("--fixture-out", type=Path, default=REPO_ROOT / "tests" / "fixtures" / "pipeline")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    states = save_pipeline(args.model_out)
    write_model_readme(args.model_out, states)
    if args.fixture_out.exists():
        shutil.rmtree(args.fixture_out)
    args.fixture_out.mkdir(parents=True)
    single_files = save_single_files(states, args.fixture_out)
    pipe = load_reference(args.model_out, states)
    results = [run_case(pipe, case, args.fixture_out) for case in CASES]
    write_fixture_readme(args.fixture_out, single_files, results)

    for root in (args.model_out, args.fixture_out):
        for p in root.rglob("*"):
            if p.is_file():
                p.chmod(0o644)  # safetensors writes 0600
    size = sum(p.stat().st_size for p in args.model_out.rglob("*") if p.is_file())
    for r in results:
        print(f"{r['case']['name']}: image mean {r['mean']:.1f} std {r['std']:.1f}, clipped {100 * r['clipped']:.1f}%")
    print(f"{args.model_out}: {size} bytes")
    assert size < MODEL_SIZE_LIMIT, f"models/tiny-flux takes {size} bytes, over the {MODEL_SIZE_LIMIT} budget"


if __name__ == "__main__":
    main()
