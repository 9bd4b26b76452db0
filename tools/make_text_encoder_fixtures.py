#!/usr/bin/env python3
"""Make the tiny text-encoder fixtures under tests/fixtures/text_encoders/ with the real transformers classes.

Regenerate (from the repository root; CPU only, no network needed once the packages are installed):

    python3 -m venv /work/venv-te
    /work/venv-te/bin/pip install torch==2.15.0 transformers==5.24.0 safetensors==0.8.0 numpy==2.4.6
    /work/venv-te/bin/python tools/make_text_encoder_fixtures.py

Options: `--out DIR` (default: tests/fixtures/text_encoders).

What it makes:
  * two tiny `transformers.CLIPTextModel`s (FLUX's `text_encoder` class): `clip_legacy` with eos_token_id 2, the
    value in openai/clip-vit-large-patch14's config.json and so in FLUX.1's text_encoder/config.json (transformers
    then pools at argmax(input_ids), the first occurrence of the largest id), and `clip_modern` with an eos_token_id
    (998) that is not the largest id (pooling at the first occurrence of eos_token_id; id 999 plays an added token);
  * one tiny `transformers.T5EncoderModel` v1.1 (FLUX's `text_encoder_2` class), gated-GELU, 32 buckets / 128 distance;
  * every parameter re-initialised from a fixed seed so that nothing is zero, then rounded to values exact in both
    bf16 and fp16, so that the 16-bit files hold the very weights the float32 reference ran with;
  * each model saved as a transformers folder (bf16, as FLUX.1 ships them: text_encoder/ = clip_legacy with the
    `text_model.*` names of every real file, clip_modern/ as transformers 5 saves it (no `text_model.`),
    text_encoder_2/ = T5 sharded behind model.safetensors.index.json), so that the fixture directory also works as a
    pipeline root; and as ComfyUI-style single files (fp16; plain and prefixed names); every layout loaded back and
    checked against the reference output;
  * io_*.safetensors (float32): inputs and outputs of one forward pass (eager attention, float32, CPU, one thread);
  * README.md describing all of it.
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

import numpy as np  # noqa: E402
import safetensors  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel  # noqa: E402
from transformers.models.t5.modeling_t5 import T5Attention  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
REGEN_CMD = "/work/venv-te/bin/python tools/make_text_encoder_fixtures.py"
SEQ_CLIP = 77

CLIP_COMMON = dict(
    vocab_size=1000,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=SEQ_CLIP,
    hidden_act="quick_gelu",
    layer_norm_eps=1e-5,
    projection_dim=32,
)
# Legacy: the ids of openai/clip-vit-large-patch14's text_config (bos 0, pad 1, eos 2). In the tiny vocabulary,
# 998 plays BOS (49406) and 999 EOS (49407): the largest id, which the FLUX tokenizer also pads with.
CLIP_LEGACY = dict(CLIP_COMMON, bos_token_id=0, pad_token_id=1, eos_token_id=2)
# Modern (after transformers PR #24773): eos_token_id names the real EOS; 999 is above it (an added token).
CLIP_MODERN = dict(CLIP_COMMON, bos_token_id=997, pad_token_id=1, eos_token_id=998)

T5_CONFIG = dict(
    vocab_size=1000,
    d_model=32,
    d_kv=8,
    num_heads=4,
    d_ff=48,
    num_layers=2,
    num_decoder_layers=2,
    relative_attention_num_buckets=32,
    relative_attention_max_distance=128,
    feed_forward_proj="gated-gelu",
    layer_norm_epsilon=1e-6,
    dropout_rate=0.0,
    is_encoder_decoder=False,
    use_cache=False,
    pad_token_id=0,
    eos_token_id=1,
    tie_word_embeddings=False,
)

BUCKET_RANGE = 600  # relative positions -600..600: every bucket of any sequence up to 601 tokens (FLUX uses 512)


# --------------------------------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------------------------------
def exact_16bit(t: torch.Tensor) -> torch.Tensor:
    """Round to bf16, then replace the few values fp16 cannot hold exactly (below its normal range)."""
    b = t.to(torch.bfloat16).to(torch.float32)
    ok = b.to(torch.float16).to(torch.float32) == b
    b = torch.where(ok, b, torch.sign(b) * 2.0**-8 + (b == 0) * 2.0**-8)
    assert torch.equal(b.to(torch.float16).to(torch.float32), b)
    assert torch.equal(b.to(torch.bfloat16).to(torch.float32), b)
    assert (b != 0).all()
    return b


@torch.no_grad()
def randomise(model: torch.nn.Module, seed: int) -> None:
    """Every parameter from a fixed seed, nothing zero: Linear weights ~ N(0, 1/fan_in), biases ~ N(0, 0.1^2),
    norm weights ~ 1 + N(0, 0.1^2), norm biases ~ N(0, 0.1^2), embeddings and T5's relative bias ~ N(0, 1)."""
    g = torch.Generator().manual_seed(seed)
    for name, p in sorted(model.named_parameters()):
        if name.endswith("embedding.weight") or name in ("shared.weight",) or "relative_attention_bias" in name:
            v = torch.randn(p.shape, generator=g)
        elif "norm" in name and name.endswith("weight"):
            v = 1.0 + 0.1 * torch.randn(p.shape, generator=g)
        elif name.endswith("bias"):
            v = 0.1 * torch.randn(p.shape, generator=g)
        else:
            v = torch.randn(p.shape, generator=g) / float(p.shape[1]) ** 0.5
        p.copy_(exact_16bit(v))


def state_f32(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items() if v.is_floating_point()}


# --------------------------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------------------------
def clip_ids_legacy() -> torch.Tensor:
    """B=3, S=77. 998 = BOS, 999 = EOS = the largest id; legacy pooling takes the first 999."""
    rows = []
    r = [998, 10, 500, 37, 999] + [999] * (SEQ_CLIP - 5)  # padded with EOS, as FLUX's CLIP tokenizer pads
    rows.append(r)
    r = [998, 5, 999, 400, 600, 999] + [0] * (SEQ_CLIP - 6)  # an EOS in the middle, then later tokens, pad 0
    rows.append(r)
    r = [998] + [int(3 + (i * 37) % 990) for i in range(SEQ_CLIP - 2)] + [999]  # full row, EOS last
    rows.append(r)
    return torch.tensor(rows, dtype=torch.long)


def clip_ids_modern() -> torch.Tensor:
    """B=3, S=77, eos_token_id 998: pooling takes the first 998 (not the argmax, 999), or 0 when there is none."""
    rows = []
    r = [997, 12, 999, 40, 998] + [998] * (SEQ_CLIP - 5)  # argmax would pick position 2, first EOS is 4
    rows.append(r)
    r = [997, 3, 998, 77, 999, 998] + [0] * (SEQ_CLIP - 6)  # first EOS at 2, an id 999 after it
    rows.append(r)
    r = [997] + [int(3 + (i * 53) % 990) for i in range(SEQ_CLIP - 1)]  # no EOS at all: transformers pools at 0
    assert 998 not in r
    rows.append(r)
    return torch.tensor(rows, dtype=torch.long)


def t5_ids(batch_lengths: list[int], seq: int, seed: int) -> torch.Tensor:
    """Random ids in [2, 1000) for each row's text, then </s> (1), then padding (0) up to seq."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for n in batch_lengths:
        body = torch.randint(2, 1000, (n,), generator=g).tolist()
        rows.append(body + [1] + [0] * (seq - n - 1))
    return torch.tensor(rows, dtype=torch.long)


# --------------------------------------------------------------------------------------------------------------------
# Saving and checking
# --------------------------------------------------------------------------------------------------------------------
def save_16(path: Path, tensors: dict[str, torch.Tensor], dtype: torch.dtype) -> None:
    save_file({k: v.to(dtype).contiguous() for k, v in tensors.items()}, str(path))


def check_same(name: str, got: torch.Tensor, ref: torch.Tensor, tol: float = 1e-6) -> None:
    err = ((got.double() - ref.double()).norm() / ref.double().norm()).item()
    if err > tol:
        sys.exit(f"{name}: relative L2 {err:.3g} > {tol:g}")
    print(f"  check {name}: rel L2 {err:.2e}")


def load_single_into(model_cls, config, path: Path, prefix: str, rename: dict[str, str],
                     strip: str = "") -> torch.nn.Module:
    """A fresh model from a single file: strip prefix, apply renames, load strictly (extra top-level keys of the
    file, such as CLIP's text_projection.weight, are dropped first)."""
    sd = load_file(str(path))
    sd = {k[len(prefix):]: v.float() for k, v in sd.items() if k.startswith(prefix)}
    sd = {rename.get(k, k): v for k, v in sd.items()}
    sd = {k.removeprefix(strip): v for k, v in sd.items()}
    model = model_cls(config).eval()
    expected = set(model.state_dict().keys())
    sd = {k: v for k, v in sd.items() if k in expected}
    if "encoder.embed_tokens.weight" in expected and "encoder.embed_tokens.weight" not in sd:
        sd["encoder.embed_tokens.weight"] = sd["shared.weight"]
    if "shared.weight" in expected and "shared.weight" not in sd:
        sd["shared.weight"] = sd["encoder.embed_tokens.weight"]
    missing = expected - set(sd.keys())
    if missing:
        sys.exit(f"{path}: missing {sorted(missing)}")
    model.load_state_dict(sd, strict=True)
    return model


def tensor_stats(t: torch.Tensor) -> str:
    t = t.double()
    return f"{t.abs().max().item():.4g} / {t.std().item():.4g}" if t.numel() > 1 else f"{t.abs().max().item():.4g} / 0"


# --------------------------------------------------------------------------------------------------------------------
# CLIP
# --------------------------------------------------------------------------------------------------------------------
@torch.no_grad()
def make_clip(out: Path, name: str, folder_name: str, classic_names: bool, cfg: dict, seed: int, ids: torch.Tensor,
              singles: list[tuple[str, str]], versions: dict) -> dict:
    print(f"{name}:")
    config = CLIPTextConfig(**cfg)
    config._attn_implementation = "eager"
    model = CLIPTextModel(config).eval()
    randomise(model, seed)
    res = model(input_ids=ids)
    last, pooled = res.last_hidden_state.contiguous(), res.pooler_output.contiguous()

    folder = out / folder_name
    if folder.exists():
        shutil.rmtree(folder)
    model.to(torch.bfloat16).save_pretrained(str(folder), safe_serialization=True)
    model.float()
    if classic_names:
        # transformers 5 saves CLIPTextModel without its old "text_model." level; the files users have (FLUX.1's
        # text_encoder/, every 4.x save) keep it. from_pretrained reads both.
        sd16 = load_file(str(folder / "model.safetensors"))
        assert not any(k.startswith("text_model.") for k in sd16)
        save_file({"text_model." + k: v for k, v in sd16.items()}, str(folder / "model.safetensors"),
                  metadata={"format": "pt"})
    back = CLIPTextModel.from_pretrained(str(folder), dtype=torch.float32, attn_implementation="eager").eval()
    r = back(input_ids=ids)
    check_same(f"{name} folder last_hidden_state", r.last_hidden_state, last)
    check_same(f"{name} folder pooler_output", r.pooler_output, pooled)

    # ComfyUI's clip_l.safetensors: the CLIPTextModel state dict as transformers 4 named it ("text_model.*") plus
    # text_projection.weight, fp16.
    sd = {"text_model." + k: v for k, v in state_f32(model).items()}
    g = torch.Generator().manual_seed(seed + 1)
    extra = {"text_projection.weight": exact_16bit(torch.randn(cfg["projection_dim"], cfg["hidden_size"], generator=g))}
    single_files = []
    for fname, prefix in singles:
        tensors = {prefix + k: v for k, v in sd.items()}
        tensors.update({prefix + k: v for k, v in extra.items()})
        save_16(out / fname, tensors, torch.float16)
        m = load_single_into(CLIPTextModel, config, out / fname, prefix, {}, strip="text_model.")
        r = m(input_ids=ids)
        check_same(f"{fname} last_hidden_state", r.last_hidden_state, last)
        check_same(f"{fname} pooler_output", r.pooler_output, pooled)
        single_files.append(dict(file=fname, prefix=prefix, tensors=len(tensors)))

    eos = cfg["eos_token_id"]
    pool_index = ids.argmax(-1) if eos == 2 else (ids == eos).int().argmax(-1)
    io = {
        "input_ids": ids.float(),
        "pool_index": pool_index.float(),
        "last_hidden_state": last,
        "pooler_output": pooled,
    }
    meta = dict(name=name, config=cfg, batch=ids.shape[0], seq=ids.shape[1], versions=versions)
    save_file({k: v.contiguous() for k, v in io.items()}, str(out / f"io_{name}.safetensors"),
              metadata={"fixture": json.dumps(meta)})
    return dict(name=name, folder=f"{folder_name}/", classic=classic_names, singles=single_files, io=io, cfg=cfg,
                params=sum(p.numel() for p in model.parameters()))


# --------------------------------------------------------------------------------------------------------------------
# T5
# --------------------------------------------------------------------------------------------------------------------
@torch.no_grad()
def t5_forward(model: T5EncoderModel, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """last_hidden_state and the position bias layer 0 computed (it is shared by every layer)."""
    seen = {}

    def hook(_module, _inputs, outputs):
        seen["bias"] = outputs[1]

    h = model.encoder.block[0].layer[0].SelfAttention.register_forward_hook(hook)
    last = model(input_ids=ids).last_hidden_state.contiguous()
    h.remove()
    return last, seen["bias"][0].contiguous()


@torch.no_grad()
def make_t5(out: Path, name: str, folder_name: str, seed: int, cases: list[tuple[str, torch.Tensor]],
            singles: list[dict], versions: dict) -> dict:
    print(f"{name}:")
    config = T5Config(**T5_CONFIG)
    config._attn_implementation = "eager"
    model = T5EncoderModel(config).eval()
    randomise(model, seed)
    assert torch.equal(model.shared.weight, model.encoder.embed_tokens.weight)

    refs = {case: t5_forward(model, ids) for case, ids in cases}

    folder = out / folder_name
    if folder.exists():
        shutil.rmtree(folder)
    model.to(torch.bfloat16).save_pretrained(str(folder), safe_serialization=True, max_shard_size="40KB")
    model.float()
    shards = sorted(p.name for p in folder.glob("*.safetensors"))
    if not (folder / "model.safetensors.index.json").exists() or len(shards) < 2:
        sys.exit(f"{folder}: expected a sharded save, got {shards}")
    back = T5EncoderModel.from_pretrained(str(folder), dtype=torch.float32, attn_implementation="eager").eval()
    for case, ids in cases:
        check_same(f"{name} folder {case}", t5_forward(back, ids)[0], refs[case][0])

    sd = state_f32(model)
    single_files = []
    for s in singles:
        tensors = {}
        for k, v in sd.items():
            if k == "encoder.embed_tokens.weight" and not s["embed_tokens"]:
                continue  # tied to shared.weight: most files store it once
            if k == "shared.weight" and not s["shared"]:
                continue
            tensors[s["prefix"] + k] = v
        save_16(out / s["file"], tensors, torch.float16)
        m = load_single_into(T5EncoderModel, config, out / s["file"], s["prefix"], {})
        for case, ids in cases:
            check_same(f"{s['file']} {case}", t5_forward(m, ids)[0], refs[case][0])
        single_files.append(dict(file=s["file"], prefix=s["prefix"], tensors=len(tensors),
                                 shared=s["shared"], embed_tokens=s["embed_tokens"]))

    rel = torch.arange(-BUCKET_RANGE, BUCKET_RANGE + 1, dtype=torch.long)
    buckets = T5Attention._relative_position_bucket(rel, bidirectional=True, num_buckets=32, max_distance=128)
    io = {"relative_position": rel.float(), "relative_bucket": buckets.float()}
    for case, ids in cases:
        io[f"{case}_input_ids"] = ids.float()
        io[f"{case}_last_hidden_state"] = refs[case][0]
        if ids.shape[1] <= 64:  # the bias of a long sequence is big: the bucket table covers it instead
            io[f"{case}_position_bias"] = refs[case][1]
    meta = dict(name=name, config=T5_CONFIG, cases={c: list(ids.shape) for c, ids in cases}, versions=versions)
    save_file({k: v.contiguous() for k, v in io.items()}, str(out / f"io_{name}.safetensors"),
              metadata={"fixture": json.dumps(meta)})
    return dict(name=name, folder=f"{folder_name}/", shards=shards, singles=single_files, io=io,
                params=sum(p.numel() for p in model.parameters()))


# --------------------------------------------------------------------------------------------------------------------
# README
# --------------------------------------------------------------------------------------------------------------------
def write_readme(out: Path, clips: list[dict], t5: dict, versions: dict) -> None:
    L = []
    L.append("# Test fixtures: tiny random text encoders (CLIP text tower, T5 v1.1 encoder)\n")
    L.append("**Random, tiny models** with the real transformers classes (`CLIPTextModel`, `T5EncoderModel`) and file "
             "layouts; their outputs mean nothing. Do not edit by hand: regenerate with\n")
    L.append("```\npython3 -m venv /work/venv-te\n/work/venv-te/bin/pip install torch==2.15.0 transformers==5.24.0 "
             "safetensors==0.8.0 numpy==2.4.6\n" + REGEN_CMD + "\n```\n")
    L.append("Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) +
             ". CPU, float32, eager attention, one thread, fixed seeds (deterministic).\n")
    L.append("Every parameter is re-initialised (Linear weights ~ N(0, 1/fan_in), biases ~ N(0, 0.1^2), norm weights ~ "
             "1 + N(0, 0.1^2), norm biases ~ N(0, 0.1^2), embeddings and T5's relative_attention_bias ~ N(0, 1)) and "
             "then rounded to values exactly representable in both bf16 and fp16: the 16-bit files hold exactly "
             "the weights the float32 reference ran with. Nothing is zero. Every layout was loaded back (folders "
             "with `from_pretrained`, single files by stripping the prefix and `load_state_dict(strict=True)`) "
             "and its forward checked against the reference (relative L2 <= 1e-6).\n")
    L.append("## Files\n")
    L.append("| model | transformers folder (bf16) | single files (fp16) | params |")
    L.append("|---|---|---|---|")
    for c in clips:
        singles = "; ".join(f"`{s['file']}` (keys `{s['prefix']}text_model.*` + `{s['prefix']}text_projection.weight`"
                            f", {s['tensors']} tensors)" for s in c["singles"]) or "-"
        naming = ("keys `text_model.*` as transformers 4 saved them (FLUX.1's text_encoder/)" if c["classic"] else
                  "keys without `text_model.`, as transformers 5 saves them")
        L.append(f"| `{c['name']}` CLIPTextModel, eos_token_id {c['cfg']['eos_token_id']} | `{c['folder']}`: "
                 f"`config.json`, `model.safetensors`, {naming} | {singles} | {c['params']} |")
    singles = "; ".join(
        f"`{s['file']}` (prefix `{s['prefix'] or '(none)'}`, {s['tensors']} tensors, "
        + ("`shared.weight`" if s["shared"] else "") + (" + " if s["shared"] and s["embed_tokens"] else "")
        + ("`encoder.embed_tokens.weight`" if s["embed_tokens"] else "") + ")"
        for s in t5["singles"])
    L.append(f"| `{t5['name']}` T5EncoderModel | `{t5['folder']}`: `config.json`, `model.safetensors.index.json` + "
             + ", ".join(f"`{s}`" for s in t5["shards"]) + f" | {singles} | {t5['params']} |\n")
    L.append("Configs: CLIP hidden 32, 2 layers, 4 heads x 8, intermediate 64, vocab 1000, 77 positions, quick_gelu, "
             "layer_norm_eps 1e-5; `clip_legacy` bos/pad/eos ids 0/1/2 (openai/clip-vit-large-patch14's, so FLUX.1's), "
             "`clip_modern` 997/1/998. T5 d_model 32, d_kv 8, 4 heads, d_ff 48, 2 layers, vocab 1000, gated-gelu "
             "(gelu_new), 32 buckets, max distance 128, layer_norm_epsilon 1e-6.\n")
    L.append("## Pooling (CLIPTextModel.pooler_output, transformers " + versions["transformers"] + ")\n")
    L.append("* `eos_token_id == 2` (legacy; FLUX.1's config): `last_hidden_state[b, input_ids[b].argmax()]`: "
             "the first position holding the row's largest id (the real EOS 49407 is the largest id in CLIP's "
             "vocabulary).")
    L.append("* otherwise: `last_hidden_state[b, (input_ids[b] == eos_token_id).int().argmax()]`: the first EOS, or "
             "position 0 when the row has none.")
    L.append("* `pool_index` in the io files records the position each row pooled at.\n")
    L.append("## io_*.safetensors (all float32; ids stored as exact floats)\n")
    L.append("| file | tensor | shape | max abs / std | meaning |")
    L.append("|---|---|---|---|---|")
    meaning = {
        "input_ids": "token ids, B x S",
        "pool_index": "position pooled for each row",
        "last_hidden_state": "final-LayerNorm output",
        "pooler_output": "last_hidden_state at pool_index",
        "relative_position": "key - query positions -600..600",
        "relative_bucket": "T5Attention._relative_position_bucket(bidirectional, 32, 128) of each",
    }
    for c in clips + [t5]:
        for k, v in c["io"].items():
            m = meaning.get(k)
            if m is None:
                case, _, what = k.partition("_")
                m = {"input_ids": f"{case}: ids (text, `</s>`=1, padding 0 - not masked, as FLUX)",
                     "last_hidden_state": f"{case}: encoder output (final_layer_norm)",
                     "position_bias": f"{case}: layer 0's position bias [H, S, S] (shared by all layers)"}[what]
            L.append(f"| `io_{c['name']}` | `{k}` | {list(v.shape)} | {tensor_stats(v)} | {m} |")
    L.append("")
    L.append("## Facts of the transformers code worth knowing when matching it\n")
    L.append("* CLIP: embeddings = token_embedding(ids) + position_embedding(arange(S)); pre-LN layers (layer_norm1 -> "
             "attention with q/k/v/out biases, scale head_dim^-0.5, causal -> residual; layer_norm2 -> fc1 -> "
             "quick_gelu x*sigmoid(1.702x) -> fc2 -> residual); final_layer_norm. No padding mask (FLUX passes none).")
    L.append("* T5: embeddings = shared(ids), not scaled; per block: T5LayerNorm (x * rsqrt(mean(x^2) + eps) * weight, "
             "no mean, no bias) -> q/k/v (no bias) -> scores q.k^T **without** 1/sqrt(d) + position bias -> softmax -> "
             "o -> residual; T5LayerNorm -> gelu_new(wi_0 x) * (wi_1 x) -> wo -> residual; final_layer_norm.")
    L.append("* T5 position bias: bias[h, i, j] = relative_attention_bias.weight[bucket(j - i), h], computed by "
             "block 0 only and reused by every block. Bidirectional bucket: half the buckets (16) for j - i > 0; "
             "|j - i| < 8 exact; else min(15, 8 + int(log(|j-i| / 8) / log(128 / 8) * 8)) in float32.")
    (out / "README.md").write_text("\n".join(L) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(REPO_ROOT / "tests" / "fixtures" / "text_encoders"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    versions = {"python": sys.version.split()[0], "torch": torch.__version__, "transformers": transformers.__version__,
                "safetensors": safetensors.__version__, "numpy": np.__version__}

    clips = [
        make_clip(out, "clip_legacy", "text_encoder", True, CLIP_LEGACY, 101, clip_ids_legacy(),
                  [("clip_l.safetensors", "")], versions),
        make_clip(out, "clip_modern", "clip_modern", False, CLIP_MODERN, 202, clip_ids_modern(),
                  [("clip_modern_prefixed.safetensors", "cond_stage_model.transformer.")], versions),
    ]
    t5 = make_t5(
        out, "t5", "text_encoder_2", 303,
        [("short", t5_ids([20, 39], 40, 304)), ("long", t5_ids([290], 300, 305))],
        [dict(file="t5xxl_fp16.safetensors", prefix="", shared=True, embed_tokens=False),
         dict(file="t5_prefixed.safetensors", prefix="text_encoders.t5xxl.transformer.", shared=False,
              embed_tokens=True)],
        versions)
    write_readme(out, clips, t5, versions)
    for p in out.rglob("*"):
        if p.is_file():
            p.chmod(0o644)  # safetensors writes 0600
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {out} ({total / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
