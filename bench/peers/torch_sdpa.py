"""Which fused attention PyTorch's scaled_dot_product_attention runs for FLUX.1's joint attention, and how fast.

Same shapes as `cuda_ops_bench`'s attention rows (batch 1, 24 heads of 128, 4608 or 16896 tokens, bf16), laid out
as diffusers' FLUX processor hands them to SDPA ([B, H, S, d] views of [B, S, H, d]). Times the default choice
and each backend alone (those that refuse the shape are reported as such); mean of 30 calls after 5, CUDA events.
"""
import json

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


def time_ms(fn, iters=30):
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / iters


def main():
    backends = {"default": None, "flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
                "efficient": SDPBackend.EFFICIENT_ATTENTION}
    for S in (4608, 16896):
        q, k, v = (torch.randn(1, S, 24, 128, device="cuda", dtype=torch.bfloat16).transpose(1, 2) for _ in range(3))
        flop = 4.0 * S * S * 128 * 24
        for name, backend in backends.items():
            def run():
                return F.scaled_dot_product_attention(q, k, v)
            try:
                if backend is None:
                    ms = time_ms(run)
                else:
                    with sdpa_kernel([backend]):
                        ms = time_ms(run)
                row = {"S": S, "backend": name, "ms": round(ms, 3), "tflops": round(flop / ms * 1e-9, 1)}
            except RuntimeError as e:
                row = {"S": S, "backend": name, "error": str(e).splitlines()[0][:120]}
            print(json.dumps(row), flush=True)
    print(json.dumps({"torch": torch.__version__, "cudnn": torch.backends.cudnn.version(),
                      "gpu": torch.cuda.get_device_name()}))


if __name__ == "__main__":
    main()
