"""Times diffusers' FluxPipeline end to end (FLUX.1-dev shapes, random bf16 weights) on one GPU, per stage.

The peer for `paradit bench pipeline`: CLIP-L, T5-v1.1-XXL, the FLUX.1-dev transformer and the FLUX VAE built from
their published configs with random weights, one 1024² image (--size), 28 steps (--steps), guidance 3.5,
output_type "pil" (decode and the 8-bit conversion included). There are no tokenizer files here, so the tokenizers
are stand-ins returning the same fixed ids as paradit's bench (77 CLIP ids, 512 T5 ids): everything after
tokenization is diffusers' own code. Stages: encode (pipe.encode_prompt, synchronized), denoise (from there to
the VAE), decode (vae.decode through postprocess), total (the whole pipe() call). Median of --iters runs after
--warmup; for torch.compile (of the transformer, as the diffusers docs do it) the first call is reported apart.

    python3 bench/peers/diffusers_flux_pipeline.py --modes eager compile
    python3 bench/peers/diffusers_flux_pipeline.py --tiny --device cpu --size 64 --steps 2   # smoke test
Prints one JSON line per mode.
"""
import argparse
import json
import statistics
import time
import types

import torch
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

# The ids of paradit's bench (src/cli/bench_pipeline_command.cpp): a short prompt, padded as FLUX.1-dev pads it.
CLIP_IDS = [49406, 320, 1125, 539, 320, 2368, 4919, 530, 518, 1573, 49407]  # BOS ... EOS, padded with EOS
T5_IDS = [3, 9, 1202, 13, 3, 9, 1712, 3823, 16, 8, 2015, 1]  # ... EOS, padded with <pad> (0)


class FixedIdsTokenizer:
    """Answers FluxPipeline's two tokenizer calls (padding="max_length" and "longest") with fixed ids."""

    added_tokens_encoder = {}  # no textual-inversion tokens (FluxPipeline's maybe_convert_prompt looks)

    def __init__(self, ids, pad_id, model_max_length):
        self.ids, self.pad_id, self.model_max_length = ids, pad_id, model_max_length

    def tokenize(self, prompt):
        return prompt.split()

    def __call__(self, prompt, padding="longest", max_length=None, return_tensors="pt", **_):
        rows = [prompt] if isinstance(prompt, str) else prompt
        ids = self.ids + [self.pad_id] * ((max_length or 0) - len(self.ids)) if padding == "max_length" else self.ids
        return types.SimpleNamespace(input_ids=torch.tensor([ids] * len(rows), dtype=torch.long))


def configs(tiny):
    """The published FLUX.1-dev component configs; --tiny: models/tiny-flux's widths and depths, same vocabularies."""
    transformer = dict(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
                       num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768,
                       guidance_embeds=True, axes_dims_rope=(16, 56, 56))
    clip = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5,
                projection_dim=768, bos_token_id=0, eos_token_id=2, pad_token_id=1)
    t5 = dict(vocab_size=32128, d_model=4096, d_kv=64, num_heads=64, d_ff=10240, num_layers=24,
              feed_forward_proj="gated-gelu", relative_attention_num_buckets=32, relative_attention_max_distance=128,
              layer_norm_epsilon=1e-6, dropout_rate=0.0, is_encoder_decoder=False, use_cache=False,
              tie_word_embeddings=False)
    vae = dict(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
               up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[128, 256, 512, 512], layers_per_block=2,
               act_fn="silu", latent_channels=16, norm_num_groups=32, sample_size=1024, scaling_factor=0.3611,
               shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False, force_upcast=True)
    if tiny:
        transformer.update(num_layers=2, num_single_layers=2, attention_head_dim=16, num_attention_heads=3,
                           joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=(4, 6, 6))
        clip.update(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                    projection_dim=32)
        t5.update(d_model=32, d_kv=8, num_heads=4, d_ff=48, num_layers=2)
        vae.update(block_out_channels=[8, 16, 16, 16], layers_per_block=1, norm_num_groups=4)
    return transformer, clip, t5, vae


def make_pipeline(device, dtype, tiny):
    """Every component built on the device in `dtype` directly (no host copy, no fp32 detour)."""
    transformer_cfg, clip_cfg, t5_cfg, vae_cfg = configs(tiny)
    torch.manual_seed(0)
    prev = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            transformer = FluxTransformer2DModel(**transformer_cfg)
            text_encoder = CLIPTextModel(CLIPTextConfig(**clip_cfg))
            text_encoder_2 = T5EncoderModel(T5Config(**t5_cfg))
            vae = AutoencoderKL(**vae_cfg)
    finally:
        torch.set_default_dtype(prev)
    # FLUX.1-dev's scheduler/scheduler_config.json.
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True,
                                                base_shift=0.5, max_shift=1.15, base_image_seq_len=256,
                                                max_image_seq_len=4096)
    pipe = FluxPipeline(scheduler=scheduler, vae=vae.eval(), text_encoder=text_encoder.eval(),
                        tokenizer=FixedIdsTokenizer(CLIP_IDS, CLIP_IDS[-1], 77),
                        text_encoder_2=text_encoder_2.eval(), tokenizer_2=FixedIdsTokenizer(T5_IDS, 0, 512),
                        transformer=transformer.eval())
    pipe.set_progress_bar_config(disable=True)
    return pipe


class StageClock:
    """Wraps pipe.encode_prompt and pipe.vae.decode to stamp the stage boundaries of one pipe() call."""

    def __init__(self, pipe, sync):
        self.sync, self.marks = sync, {}
        encode, decode = pipe.encode_prompt, pipe.vae.decode

        def timed_encode(*a, **kw):
            out = encode(*a, **kw)
            self.sync()
            self.marks["encoded"] = time.perf_counter()
            return out

        def timed_decode(*a, **kw):
            self.sync()  # the denoising loop's queued work ends here
            self.marks["denoised"] = time.perf_counter()
            return decode(*a, **kw)

        pipe.encode_prompt = timed_encode
        pipe.vae.decode = timed_decode

    def run(self, pipe, size, steps, device):
        generator = torch.Generator(device=device).manual_seed(0)
        self.sync()
        start = time.perf_counter()
        out = pipe(prompt="a photo of a cat", height=size, width=size, num_inference_steps=steps,
                   guidance_scale=3.5, max_sequence_length=512, generator=generator, output_type="pil")
        end = time.perf_counter()
        m = self.marks
        if out is None:  # xDiT's PipeFusion: only the last stage's ranks decode and return the image
            m["denoised"] = end
        else:
            assert out.images[0].size == (size, size), out.images[0].size
        return dict(encode_s=m["encoded"] - start, denoise_s=m["denoised"] - m["encoded"],
                    decode_s=end - m["denoised"], total_s=end - start)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=28)
    ap.add_argument("--modes", nargs="+", default=["eager", "compile"], choices=["eager", "compile"])
    ap.add_argument("--compile-mode", default="default", help="torch.compile mode (default, max-autotune, ...)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="tiny components (models/tiny-flux's sizes): a smoke test")
    args = ap.parse_args()
    cuda = args.device.startswith("cuda")
    dtype = torch.bfloat16 if cuda else torch.float32  # bf16 as FLUX runs on a GPU; f32 for CPU smoke tests
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    t0 = time.perf_counter()
    pipe = make_pipeline(args.device, dtype, args.tiny)
    sync()
    build_s = time.perf_counter() - t0
    clock = StageClock(pipe, sync)
    device_name = torch.cuda.get_device_name() if cuda else "cpu"
    for mode in args.modes:
        if mode == "compile":
            pipe.transformer = torch.compile(pipe.transformer, mode=args.compile_mode)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        runs = []
        with torch.inference_mode():
            for _ in range(args.warmup + args.iters):
                runs.append(clock.run(pipe, args.size, args.steps, args.device))
        timed = runs[args.warmup:]
        row = dict(bench="pipeline", engine="diffusers", mode=mode, model="tiny" if args.tiny else "FLUX.1-dev",
                   gpu=device_name, size=args.size, steps=args.steps, iters=args.iters)
        for stage in ("encode_s", "denoise_s", "decode_s", "total_s"):
            row[stage] = round(statistics.median(r[stage] for r in timed), 4)
        row.update(step_ms=round(1e3 * row["denoise_s"] / args.steps, 2),
                   min_total_s=round(min(r["total_s"] for r in timed), 4),
                   first_run_s=round(runs[0]["total_s"], 3), build_s=round(build_s, 2),
                   times_s=[round(r["total_s"], 4) for r in timed],
                   peak_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else 0.0)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
