"""GPT forward+backward speed: ms/step, tokens/s, model FLOP utilisation, and Python/engine overhead.

    .venv/bin/python benchmarks/bench_gpt.py [--device cpu|cuda] [--repeats 5] [--profile] [--json PATH]

Shapes (float32, vocab 65): "baby" is nanoGPT's CPU shakespeare-char model
(n_layer 4, n_head 4, n_embd 128, block 64, batch 12); "medium" is n_layer 6,
n_head 6, n_embd 384, block 256, batch 8. One step = zero_grad, forward with
targets, backward (no optimizer).

MFU: model FLOPs per step are nanoGPT's estimate, (6 N + 12 L C T) * B * T with
N the parameter count without the position table (the tied head counted once);
they are divided by the step time and by the float32 GEMM throughput of raw
NumPy/CuPy measured in this run (the best of square 1024 and 2048 matmuls).
A second figure divides by the rate of raw GEMMs of the model's own Linear
shapes (forward and both backward products), which small, skinny matrices
cannot run at the square-matrix peak.

Overhead (baby shape): the same model structure and the same number of ops
with trivial sizes (n_embd = n_head = 4, batch 1, T 4, vocab 65) takes almost
no arithmetic, so its step time is what Python, the autograd engine and NumPy's
per-call dispatch cost; overhead share = that time / the baby step time.
``--profile`` prints cProfile's hot spots of the baby step (by own time).

Run it on a quiet machine: BLAS threads that share cores with another busy
process stall each other, and every figure collapses. ``OPENBLAS_NUM_THREADS=1``
gives steadier ratios on a busy machine (raw and model then use one core alike).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
from collections.abc import Callable

import numpy as np
from bench_ops import VOCAB, device_sync, gpt_and_batch, timed  # benchmarks/ is on sys.path when run as a script

from minilora import backend
from minilora.nn import GPT

SHAPES = {
    "baby": dict(n_layer=4, n_head=4, n_embd=128, block_size=64, batch=12),
    "medium": dict(n_layer=6, n_head=6, n_embd=384, block_size=256, batch=8),
    "trivial": dict(n_layer=4, n_head=4, n_embd=4, block_size=4, batch=1),  # the baby's op count, no arithmetic
}


def make_step(shape: dict, device: str) -> tuple[GPT, Callable[[], None]]:
    model, x, y = gpt_and_batch(shape, shape["block_size"], device)

    def step() -> None:
        model.zero_grad()
        _, loss = model(x, y)
        loss.backward()

    return model, step


def flops_per_step(model: GPT, shape: dict) -> float:
    cfg = model.config
    n = model.num_parameters() - model.transformer.wpe.weight.size
    T, B = cfg.block_size, shape["batch"]
    return (6 * n + 12 * cfg.n_layer * cfg.n_embd * T) * T * B


def raw_matmul_flops(device: str, repeats: int, sync: Callable[[], None]) -> float:
    """Best float32 GEMM rate (FLOP/s) of the raw array library on square 1024 and 2048 matrices."""
    xp = backend.module_for(device)
    best = 0.0
    for n in (1024, 2048):
        a = backend.to_device(np.random.default_rng(0).standard_normal((n, n), dtype=np.float32), device)
        b = a.T.copy()
        (t,) = timed([lambda a=a, b=b: a @ b], repeats, sync)
        best = max(best, 2 * n**3 / t)
        del a, b
    del xp
    return best


def model_gemm_flops(shape: dict, device: str, repeats: int, sync: Callable[[], None]) -> float:
    """FLOP/s of raw GEMMs with this model's Linear shapes: for each layer's c_attn, c_proj, c_fc, mlp.c_proj
    and the lm_head, the forward x W^T and the two backward products g_y W and g_y^T x."""
    N, C = shape["batch"] * shape["block_size"], shape["n_embd"]
    rng = np.random.default_rng(0)
    total_flops, total_t = 0.0, 0.0
    for fan_in, fan_out, count in ((C, 3 * C, shape["n_layer"]), (C, C, shape["n_layer"]),
                                   (C, 4 * C, shape["n_layer"]), (4 * C, C, shape["n_layer"]), (C, VOCAB, 1)):
        x = backend.to_device(rng.standard_normal((N, fan_in), dtype=np.float32), device)
        w = backend.to_device(rng.standard_normal((fan_out, fan_in), dtype=np.float32), device)
        g = backend.to_device(rng.standard_normal((N, fan_out), dtype=np.float32), device)
        ts = timed([lambda x=x, w=w: x @ w.T, lambda g=g, w=w: g @ w, lambda g=g, x=x: g.T @ x], repeats, sync)
        total_t += count * sum(ts)
        total_flops += count * 3 * 2 * N * fan_in * fan_out
    return total_flops / total_t


def profile_step(step: Callable[[], None], top: int = 18) -> str:
    step()
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(3):
        step()
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=backend.DEVICES)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--profile", action="store_true", help="print cProfile hot spots of the baby step")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = ap.parse_args()
    sync = device_sync(args.device)

    raw = raw_matmul_flops(args.device, args.repeats, sync)
    results = {"device": args.device, "machine": platform.processor() or platform.machine(),
               "cpu_count": os.cpu_count(), "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default"),
               "numpy": np.__version__, "raw_matmul_gflops": raw / 1e9, "shapes": {}}
    for name in ("baby", "medium", "trivial"):
        shape = SHAPES[name]
        model, step = make_step(shape, args.device)
        (t,) = timed([step], args.repeats if name != "medium" else max(2, args.repeats // 2), sync)
        flops = flops_per_step(model, shape)
        tokens = shape["batch"] * shape["block_size"]
        gemm = model_gemm_flops(shape, args.device, args.repeats, sync) if name != "trivial" else float("nan")
        results["shapes"][name] = {
            **shape, "params": model.num_parameters(), "ms_per_step": t * 1e3, "tokens_per_s": tokens / t,
            "model_gflops_per_step": flops / 1e9, "mfu_vs_raw_matmul": flops / t / raw,
            "raw_model_gemm_gflops": gemm / 1e9, "mfu_vs_model_gemms": flops / t / gemm,
        }
        if name == "baby" and args.profile:
            results["baby_profile"] = profile_step(step)
    shapes = results["shapes"]
    results["baby_overhead_share"] = shapes["trivial"]["ms_per_step"] / shapes["baby"]["ms_per_step"]

    print(f"raw {args.device} float32 matmul: {raw / 1e9:.1f} GFLOP/s ({os.cpu_count()} CPUs, "
          f"OPENBLAS_NUM_THREADS={results['blas_threads']})")
    print(f"{'shape':<8} {'params':>10} {'ms/step':>9} {'tokens/s':>10} {'GFLOP/step':>11} {'MFU vs raw':>11} "
          f"{'raw GEMMs, model shapes':>24} {'MFU vs those':>13}")
    for name, r in shapes.items():
        print(f"{name:<8} {r['params']:>10,} {r['ms_per_step']:>9.2f} {r['tokens_per_s']:>10,.0f} "
              f"{r['model_gflops_per_step']:>11.3f} {r['mfu_vs_raw_matmul']:>10.1%} "
              f"{r['raw_model_gemm_gflops']:>17.1f} GFLOP/s {r['mfu_vs_model_gemms']:>12.1%}")
    print(f"baby overhead share (trivial-size step / baby step): {results['baby_overhead_share']:.1%}"
          "   targets: medium MFU >= 50%, baby overhead <= 20%")
    if args.profile:
        print(results["baby_profile"])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
