"""Times xDiT (xfuser) running FLUX.1-dev end to end on several GPUs (random bf16 weights of the real shapes).

The multi-GPU peer for `paradit bench pipeline --ulysses U --ring R`. The pipeline is diffusers_flux_pipeline.py's
(CLIP-L, T5-v1.1-XXL, FLUX VAE and the same fixed 77 + 512 token ids, guidance 3.5, output_type "pil"), with the
transformer swapped for xDiT's `xFuserFlux1Transformer2DWrapper` and xDiT's runtime state set up around it, as
xfuser's own `xdit` runner does for FLUX.1-dev without PipeFusion (runner_models/flux.py): every rank encodes the
prompt and decodes the image itself; only the transformer is split, by sequence (Ulysses x Ring, USP). Without
flash-attn installed xDiT picks cuDNN attention (`--attention-backend` overrides it).

xDiT has no CFG parallel for FLUX (xFuserFluxPipeline declares cfg_parallel_available=False; FLUX.1-dev is
guidance-distilled, one transformer call per step), so "cfg" is 1 in every row. --true-cfg runs diffusers' true CFG
(a negative prompt, true_cfg_scale 4, as paradit's --true-cfg): two sequence-parallel transformer calls per step,
xDiT's way to do the work that paradit's --cfg-parallel splits over two halves of the ranks.

torch.compile follows the runner too: inductor's compute/communication reordering on, the whole transformer
compiled with mode "reduce-overhead" (CUDA graphs; the runner's choice for FLUX.1-dev), --compile-mode to change.
The first call after compiling is reported apart (first_run_s).

Times: each run starts after a synchronize and a barrier; a stage's time is the slowest rank's. Stages as in
diffusers_flux_pipeline.py: encode, denoise (the 28 transformer calls and scheduler steps), decode (VAE and the
8-bit conversion), total (the whole pipe() call). --forward-iters also times single transformer forwards with the
inputs of the pipeline's first step (forward_ms).

    torchrun --standalone --nproc_per_node 2 bench/peers/xdit_flux.py --ulysses 2 --size 1024 --modes eager compile
    torchrun --standalone --nproc_per_node 2 bench/peers/xdit_flux.py --ring 2 --device cpu --tiny --size 64 --steps 2
Rank 0 prints one JSON line per mode. A rank that fails ends the run (torchrun stops the others); collectives and
the rendezvous time out after --dist-timeout seconds instead of hanging.
"""
import argparse
import datetime
import json
import os
import statistics
import sys
import time

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import diffusers_flux_pipeline as flux_peer  # noqa: E402  (the pipeline, tokenizer stand-ins and stage clock)


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ulysses", type=int, default=1, help="Ulysses (head-parallel) degree")
    ap.add_argument("--ring", type=int, default=1, help="Ring attention degree")
    ap.add_argument("--pipefusion", type=int, default=1,
                    help="PipeFusion degree (stages); ulysses x ring x pipefusion = number of ranks")
    ap.add_argument("--patches", type=int, default=0, help="PipeFusion: image patches (0: = --pipefusion)")
    ap.add_argument("--warmup-steps", type=int, default=1, help="PipeFusion: synchronous steps first")
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=28)
    ap.add_argument("--modes", nargs="+", default=["eager"], choices=["eager", "compile"])
    ap.add_argument("--compile-mode", default="reduce-overhead",
                    help="torch.compile mode; reduce-overhead is what xfuser's runner uses for FLUX.1-dev")
    ap.add_argument("--attention-backend", default=None,
                    help="xDiT attention backend (cudnn, sdpa, flash, ...); default: xDiT's own pick")
    ap.add_argument("--true-cfg", action="store_true",
                    help="true CFG: a negative prompt (the same fixed ids) and scale 4, two transformer calls a step")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--forward-iters", type=int, default=0, help="also time this many single transformer forwards")
    ap.add_argument("--dist-timeout", type=int, default=600, help="seconds before a stuck collective fails")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"],
                    help="cpu: gloo ranks, f32, sdpa_flash attention: a smoke test of this script")
    ap.add_argument("--tiny", action="store_true",
                    help="tiny components (models/tiny-flux's sizes, 3 heads: Ulysses 1 or 3): a smoke test")
    args = ap.parse_args()
    if args.device == "cpu" and args.attention_backend is None:
        args.attention_backend = "sdpa_flash"
    return args


def xfuser_on_cpu():
    """For --device cpu smoke tests: xfuser runs on GPUs only. It enables sequence parallelism only if CUDA is there
    when it is first imported, and takes a CUDA build of torch for a GPU; here it is told otherwise where needed, and
    its "sdpa_flash" backend gets torch's CPU flash kernel (which also returns the log-sum-exp Ring attention needs)."""
    import types
    real = torch.cuda.is_available, torch.cuda.current_device, torch.cuda.get_device_properties
    torch.cuda.is_available, torch.cuda.current_device = (lambda: True), (lambda: 0)
    no_gpu = types.SimpleNamespace(gcnArchName="", major=9, minor=0, name="cpu")
    torch.cuda.get_device_properties = lambda *_: no_gpu
    try:
        import xfuser  # noqa: F401  (its package check runs now)
        import xfuser.model_executor.layers.usp  # noqa: F401  (takes yunchang's process groups "on CUDA" only)
    finally:
        torch.cuda.is_available, torch.cuda.current_device, torch.cuda.get_device_properties = real
    import xfuser.envs as envs
    from xfuser.core.distributed.attention_backend import ATTENTION_FUNCTION_REGISTRY, AttentionBackendType
    envs._is_cuda = lambda: False
    envs.get_torch_distributed_backend = lambda: "gloo"

    def cpu_flash(query, key, value, dropout_p, is_causal, attention_kwargs=None):
        return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(query, key, value, dropout_p, is_causal)

    ATTENTION_FUNCTION_REGISTRY[AttentionBackendType.SDPA_FLASH] = cpu_flash


def init_distributed(args):
    """Process groups with a timeout (xfuser's own init sets none), then xfuser's groups on top of them."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    want = args.ulysses * args.ring * args.pipefusion
    if world != want:
        sys.exit(f"xdit_flux.py: {world} ranks but --ulysses {args.ulysses} x --ring {args.ring} x --pipefusion "
                 f"{args.pipefusion} = {want}; launch with torchrun --nproc_per_node {want}")
    if "RANK" not in os.environ:  # one rank, started without torchrun
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT="29533")
    local_rank = int(os.environ["LOCAL_RANK"])
    timeout = datetime.timedelta(seconds=args.dist_timeout)
    # xfuser makes its subgroups (Ulysses, Ring, ...) without a timeout: they take torch's defaults, made ours here.
    dist.distributed_c10d.default_pg_timeout = dist.distributed_c10d.default_pg_nccl_timeout = timeout
    if args.device == "cuda":
        if torch.cuda.device_count() <= local_rank:
            sys.exit(f"xdit_flux.py: rank {local_rank} has no GPU ({torch.cuda.device_count()} visible)")
        torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl", timeout=timeout)
    else:
        dist.init_process_group("gloo", timeout=timeout)
        xfuser_on_cpu()
    from xfuser.core.distributed import init_distributed_environment
    init_distributed_environment(backend="nccl" if args.device == "cuda" else "gloo")
    return local_rank


class Ranks:
    """Synchronization and cross-rank reductions for the timings."""

    def __init__(self, cuda):
        self.cuda = cuda

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def start(self):
        self.sync()
        dist.barrier()
        return time.perf_counter()

    def slowest(self, values):
        """Each value's maximum over the ranks."""
        t = torch.tensor(values, dtype=torch.float64, device="cuda" if self.cuda else "cpu")
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return t.tolist()


class TrueCfgFluxPipeline(flux_peer.FluxPipeline):
    """Every call adds the negative prompt (the tokenizer stand-ins give it the prompt's ids) and true CFG scale 4."""

    def __call__(self, *args, **kwargs):
        return super().__call__(*args, negative_prompt=kwargs["prompt"], true_cfg_scale=4.0, **kwargs)


def make_xdit_pipeline(args, local_rank):
    """diffusers_flux_pipeline.make_pipeline with xDiT's transformer subclass, then xDiT's runtime state; with
    PipeFusion, the diffusers pipeline wrapped whole in xFuserFluxPipeline (as xfuser's examples do), which
    converts the transformer itself and sets its input parameters on every call."""
    from xfuser import xFuserArgs, xFuserFluxPipeline
    from xfuser.core.distributed import get_runtime_state, initialize_runtime_state
    from xfuser.model_executor.models.transformers.transformer_flux import xFuserFlux1Transformer2DWrapper

    cuda = args.device == "cuda"
    engine_config, _ = xFuserArgs(
        model="FLUX.1-dev (random weights)", ulysses_degree=args.ulysses, ring_degree=args.ring,
        height=args.size, width=args.size, num_inference_steps=args.steps, max_sequence_length=512,
        guidance_scale=3.5, use_torch_compile=False, attention_backend=args.attention_backend,
        pipefusion_parallel_degree=args.pipefusion, num_pipeline_patch=args.patches or args.pipefusion,
        warmup_steps=args.warmup_steps,
    ).create_config()
    engine_config.runtime_config.dtype = torch.bfloat16 if cuda else torch.float32  # its default is float16

    device = f"cuda:{local_rank}" if cuda else "cpu"
    dtype = torch.bfloat16 if cuda else torch.float32
    if args.pipefusion > 1:
        pipe = xFuserFluxPipeline(flux_peer.make_pipeline(device, dtype, args.tiny), engine_config)
        return pipe, (lambda steps: None), get_runtime_state().attention_backend
    # make_pipeline builds its transformer from the module's FluxTransformer2DModel name: point that at xDiT's
    # subclass (same constructor arguments) so the 12 B weights are made once, on this rank's device.
    flux_peer.FluxTransformer2DModel = xFuserFlux1Transformer2DWrapper
    pipe = flux_peer.make_pipeline(device, dtype, args.tiny)
    if args.true_cfg:
        pipe.__class__ = TrueCfgFluxPipeline
    initialize_runtime_state(pipe, engine_config)

    def set_input(steps):  # what the runner does before each pipe() call (split_text_embed_in_sp: no PipeFusion)
        get_runtime_state().set_input_parameters(height=args.size, width=args.size, batch_size=1,
                                                 num_inference_steps=steps, max_condition_sequence_length=512,
                                                 split_text_embed_in_sp=True)

    return pipe, set_input, get_runtime_state().attention_backend


def enable_runner_compile_options():
    """xfuser's runner (_enable_compute_comm_overlap) sets these before compiling a SPMD (non-PipeFusion) model."""
    torch._inductor.config.reorder_for_compute_comm_overlap = True
    torch._inductor.config.reorder_for_compute_comm_overlap_passes = [
        "reorder_compute_for_overlap", "sink_waits", "raise_comms"]
    # xDiT's Ring attention asks version_at_least(torch.__version__, ...) on every call; dynamo (torch 2.11) fails
    # tracing packaging's Version() on it (InternalTorchDynamoError on a raise ... from None). Its answer is fixed.
    import xfuser.model_executor.layers.usp as usp
    usp.version_at_least = torch.compiler.assume_constant_result(usp.version_at_least)


def capture_forward_inputs(pipe, run_pipe):
    """The transformer's arguments at the first step of a 1-step eager pipeline call, for timing forwards alone."""
    captured = {}

    def hook(module, args, kwargs):
        if not captured:
            captured.update({k: v.clone() if torch.is_tensor(v) else v for k, v in kwargs.items()})
            captured["_args"] = [a.clone() if torch.is_tensor(a) else a for a in args]

    handle = pipe.transformer.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        run_pipe(1)
    finally:
        handle.remove()
    return captured


def time_forwards(transformer, inputs, iters, ranks):
    kwargs = {k: v for k, v in inputs.items() if k != "_args"}
    times = []
    for _ in range(iters):
        t0 = ranks.start()
        transformer(*inputs["_args"], **kwargs)
        ranks.sync()
        times.append(time.perf_counter() - t0)
    return [1e3 * t for t in ranks.slowest(times)]


def main():
    args = parse_args()
    if args.iters < 1 or args.warmup < 0 or args.steps < 1:
        sys.exit("xdit_flux.py: --iters and --steps must be at least 1, --warmup at least 0")
    if args.pipefusion > 1 and (args.forward_iters or "compile" in args.modes):
        sys.exit("xdit_flux.py: --pipefusion runs whole pipelines, eager (no --forward-iters, no compile)")
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        sys.exit("xdit_flux.py: no CUDA device visible (use --device cpu --tiny for a smoke test)")
    local_rank = init_distributed(args)
    rank = dist.get_rank()
    ranks = Ranks(cuda)

    t0 = time.perf_counter()
    pipe, set_input, attention_backend = make_xdit_pipeline(args, local_rank)
    ranks.sync()
    build_s = ranks.slowest([time.perf_counter() - t0])[0]
    clock = flux_peer.StageClock(pipe, ranks.sync)
    device_name = torch.cuda.get_device_name() if cuda else "cpu"
    eager_transformer = pipe.transformer
    stages = ("encode_s", "denoise_s", "decode_s", "total_s")

    def run_once(steps):
        set_input(steps)
        ranks.start()  # synchronize and barrier: every rank starts together
        row = clock.run(pipe, args.size, steps, args.device)
        return dict(zip(stages, ranks.slowest([row[s] for s in stages])))

    with torch.inference_mode():
        forward_inputs = capture_forward_inputs(pipe, run_once) if args.forward_iters else None

    for mode in args.modes:
        if mode == "compile":
            enable_runner_compile_options()
            pipe.transformer = torch.compile(eager_transformer, mode=args.compile_mode)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        runs = []
        with torch.inference_mode():
            for _ in range(args.warmup + args.iters):
                runs.append(run_once(args.steps))
            forward_ms = (time_forwards(pipe.transformer, forward_inputs, args.forward_iters, ranks)
                          if args.forward_iters else [])
        timed = runs[args.warmup:]
        peak = ranks.slowest([torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0])[0]
        row = dict(bench="pipeline", engine="xdit", mode=mode, model="tiny" if args.tiny else "FLUX.1-dev",
                   gpu=device_name, gpus=dist.get_world_size(), ulysses=args.ulysses, ring=args.ring, cfg=1,
                   pipefusion=args.pipefusion, patches=args.patches or args.pipefusion,
                   warmup_steps=args.warmup_steps,
                   true_cfg=args.true_cfg,
                   attention=str(getattr(attention_backend, "name", attention_backend)).lower(),
                   size=args.size, steps=args.steps, iters=args.iters)
        for stage in stages:
            row[stage] = round(statistics.median(r[stage] for r in timed), 4)
        row.update(median_s=row["total_s"], step_ms=round(1e3 * row["denoise_s"] / args.steps, 2),
                   min_total_s=round(min(r["total_s"] for r in timed), 4),
                   first_run_s=round(runs[0]["total_s"], 3), build_s=round(build_s, 2),
                   times_s=[round(r["total_s"], 4) for r in timed], peak_gib=round(peak, 2))
        if mode == "compile":
            row["compile_mode"] = args.compile_mode
        if forward_ms:
            row.update(forward_ms=round(statistics.median(forward_ms), 2), forward_iters=args.forward_iters)
        if rank == 0:
            print(json.dumps(row), flush=True)
    # Every rank has passed the last all-reduce (Ranks.slowest waits for its result), so no work is left. After
    # compiled (CUDA-graph) runs, dist.barrier() / destroy_process_group() did not return on 4 x H200: the row was
    # printed, then the run's time cap killed it (rc 124, minutes of device time a run). Leave without teardown.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
