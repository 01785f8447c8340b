"""Fused vs unfused forward+backward of the ops that minilora fuses, in one run.

"Unfused" composes the same math from primitive Tensor ops (each its own graph
node that saves its inputs), which is what the fused Functions replace. Also
times the fused linear against raw NumPy GEMMs (forward + both backward GEMMs).

    .venv/bin/python benchmarks/bench_ops.py [--device cpu|cuda] [--repeats 5]

Shape: GPT-medium-like, B 8, T 256, C 384, nh 6 (hs 64), vocab 256, float32. Grouped-query attention:
the same q with nkv 2 key/value heads, "unfused" = repeating k and v to 6 heads (transformers' repeat_kv)
before the fused attention; RoPE and SwiGLU against their composition from Tensor ops.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from tqdm import tqdm

import minilora as ml
from minilora import F, backend
from minilora.nn import GPT, GPTConfig
from minilora.ops.rope import rope_cos_sin

B, T, C, NH, V = 8, 256, 384, 6, 256
NKV = 2  # key/value heads of the grouped-query attention row


VOCAB = 65  # the character vocabulary of the benchmark GPTs (bench_gpt, bench_peft, run)


def gpt_config(shape: dict) -> GPTConfig:
    """The benchmark GPT of ``shape`` (block_size, n_layer, n_head, n_embd)."""
    return GPTConfig(VOCAB, shape["block_size"], shape["n_layer"], shape["n_head"], shape["n_embd"])


def gpt_and_batch(shape: dict, T: int, device: str) -> tuple[GPT, Any, Any]:
    """A GPT of ``shape`` from seed 0 and a fixed random batch (inputs, targets), each (shape["batch"], T)."""
    ml.manual_seed(0)
    model = GPT(gpt_config(shape)).to(device)
    rng = np.random.default_rng(0)
    x = backend.to_device(rng.integers(0, VOCAB, (shape["batch"], T)), device)  # (B, T)
    y = backend.to_device(rng.integers(0, VOCAB, (shape["batch"], T)), device)  # (B, T)
    return model, x, y


def device_sync(device: str) -> Callable[[], None]:
    """What ``timed`` calls after each step: nothing on the CPU; on CUDA, wait for the device, so a time
    covers the kernels and not only their launch. Exits with the reason when CUDA was asked for and is missing."""
    if device == "cuda" and not backend.cuda_available():
        raise SystemExit(f"--device cuda: {backend.cuda_unavailable_reason()}")
    xp = backend.module_for(device)
    if xp is np:
        return lambda: None
    return lambda: xp.cuda.Device().synchronize()


def timed(steps: list[Callable[[], None]], repeats: int, sync: Callable[[], None]) -> list[float]:
    """Best-of-``repeats`` seconds of each step, interleaved (a busy machine slows all of them alike)."""
    best = [math.inf] * len(steps)
    for r in range(repeats + 1):
        for i, step in enumerate(steps):
            t0 = time.perf_counter()
            step()
            sync()
            if r:  # round 0 is the warm-up
                best[i] = min(best[i], time.perf_counter() - t0)
    return best


def fwd_bwd(fn: Callable[..., ml.Tensor], *inputs: ml.Tensor) -> Callable[[], None]:
    def step() -> None:
        for t in inputs:
            t.grad = None
        y = fn(*inputs)
        y.backward(ml.tensor(np.ones(y.shape, np.float32), device=y.device) if y.ndim else None)

    return step


# ----------------------------------------------------------------------------- unfused references
def layer_norm_unfused(x: ml.Tensor, w: ml.Tensor, b: ml.Tensor) -> ml.Tensor:
    mu = x.mean(axis=-1, keepdims=True)
    xc = x - mu
    var = (xc * xc).mean(axis=-1, keepdims=True)
    return xc / (var + 1e-5).sqrt() * w + b


def log_softmax_unfused(x: ml.Tensor) -> ml.Tensor:
    z = x - ml.Tensor(x.data.max(axis=-1, keepdims=True))  # constant shift
    return z - z.exp().sum(axis=-1, keepdims=True).log()


def softmax_unfused(x: ml.Tensor) -> ml.Tensor:
    e = (x - ml.Tensor(x.data.max(axis=-1, keepdims=True))).exp()
    return e / e.sum(axis=-1, keepdims=True)


def cross_entropy_unfused(x: ml.Tensor, t: np.ndarray) -> ml.Tensor:
    logp = log_softmax_unfused(x).reshape(-1, x.shape[-1])
    rows = x.xp.arange(logp.shape[0])
    return -logp[rows, t.reshape(-1)].mean()


def gelu_unfused(x: ml.Tensor) -> ml.Tensor:
    return 0.5 * x * (1.0 + ((x + 0.044715 * x * x * x) * math.sqrt(2 / math.pi)).tanh())


def rope_unfused(x: ml.Tensor, cos: object, sin: object) -> ml.Tensor:
    h = x.shape[-1] // 2
    return x * cos + F.concat([-x[..., h:], x[..., :h]], axis=-1) * sin  # x cos + rotate_half(x) sin


def repeat_kv(a: ml.Tensor, g: int) -> ml.Tensor:
    """(B, nkv, T, hs) -> (B, nkv * g, T, hs) as transformers' repeat_kv: g copies of each head."""
    B, nkv, T, hs = a.shape
    return F.stack([a] * g, axis=2).reshape(B, nkv * g, T, hs)


def swiglu_unfused(gate: ml.Tensor, up: ml.Tensor) -> ml.Tensor:
    return F.silu(gate) * up


def attention_unfused(q: ml.Tensor, k: ml.Tensor, v: ml.Tensor, above: object) -> ml.Tensor:
    att = (q @ k.transpose(0, 1, 3, 2)) * (1.0 / math.sqrt(q.shape[-1]))
    att = F.masked_fill(att, above, -math.inf)
    return softmax_unfused(att) @ v


# ----------------------------------------------------------------------------- run
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    dev = args.device
    sync = device_sync(dev)
    xp = backend.module_for(dev)
    rng = np.random.default_rng(0)

    def t(*shape: int, grad: bool = True) -> ml.Tensor:
        return ml.tensor(rng.standard_normal(shape).astype(np.float32), device=dev, requires_grad=grad)

    x, w, b = t(B, T, C), t(C), t(C)
    h, h2 = t(B, T, 4 * C), t(B, T, 4 * C)
    logits = t(B, T, V)
    targets = backend.to_device(rng.integers(0, V, (B, T)), dev)
    q, k, v = t(B, NH, T, C // NH), t(B, NH, T, C // NH), t(B, NH, T, C // NH)
    above = backend.to_device(np.triu(np.ones((T, T), bool), 1), dev)
    kg, vg = t(B, NKV, T, C // NH), t(B, NKV, T, C // NH)
    cos, sin = rope_cos_sin(xp, xp.arange(T), C // NH, 10000.0, np.float32)

    def gqa(a: ml.Tensor, c: ml.Tensor, d: ml.Tensor) -> ml.Tensor:
        return F.scaled_dot_product_attention(a, c, d, causal=True)

    def gqa_repeated(a: ml.Tensor, c: ml.Tensor, d: ml.Tensor) -> ml.Tensor:
        return F.scaled_dot_product_attention(a, repeat_kv(c, NH // NKV), repeat_kv(d, NH // NKV), causal=True)

    pairs = {
        "layer_norm": (fwd_bwd(F.layer_norm, x, w, b), fwd_bwd(layer_norm_unfused, x, w, b)),
        "softmax": (fwd_bwd(F.softmax, logits), fwd_bwd(softmax_unfused, logits)),
        "cross_entropy": (fwd_bwd(lambda z: F.cross_entropy(z, targets), logits),
                          fwd_bwd(lambda z: cross_entropy_unfused(z, targets), logits)),
        "attention (causal)": (fwd_bwd(lambda a, c, d: F.scaled_dot_product_attention(a, c, d, causal=True), q, k, v),
                               fwd_bwd(lambda a, c, d: attention_unfused(a, c, d, above), q, k, v)),
        "gelu (tanh)": (fwd_bwd(F.gelu, h), fwd_bwd(gelu_unfused, h)),
        f"gqa ({NH} on {NKV}, causal)": (fwd_bwd(gqa, q, kg, vg), fwd_bwd(gqa_repeated, q, kg, vg)),
        "rope (q)": (fwd_bwd(lambda a: F.rotary_embedding(a, cos, sin), q),
                     fwd_bwd(lambda a: rope_unfused(a, cos, sin), q)),
        "swiglu": (fwd_bwd(F.swiglu, h, h2), fwd_bwd(swiglu_unfused, h, h2)),
    }
    rows = []
    for name, (fused, unfused) in tqdm(pairs.items(), desc="fused vs unfused", leave=False):
        tf, tu = timed([fused, unfused], args.repeats, sync)
        rows.append((name, tf * 1e3, tu * 1e3, tu / tf))

    # linear: fused fwd+bwd against the three raw GEMMs it must perform
    n, d = 1024, 1024
    xl, wl, bl = t(n, d), t(d, d), t(d)
    xa, wa, ga = xl.data, wl.data, xp.ones((n, d), np.float32)

    def raw() -> None:
        _ = xa @ wa.T
        _ = ga @ wa
        _ = ga.T @ xa

    frozen = fwd_bwd(F.linear, xl, t(d, d, grad=False), t(d, grad=False))
    t_raw, t_lin, t_lin_frozen = timed([raw, fwd_bwd(F.linear, xl, wl, bl), frozen], args.repeats * 4, sync)

    print(f"device {dev}, float32, B {B} T {T} C {C} nh {NH} vocab {V}; best of {args.repeats}, forward+backward")
    print(f"{'op':<22} {'fused ms':>9} {'unfused ms':>11} {'unfused/fused':>14}")
    for name, tf, tu, r in rows:
        print(f"{name:<22} {tf:9.2f} {tu:11.2f} {r:13.2f}x")
    print(f"\nlinear 1024x1024 (x {n}x{d}, bias), forward + g_x + g_W + g_b: {t_lin * 1e3:.2f} ms; "
          f"raw 3 GEMMs {t_raw * 1e3:.2f} ms -> {t_raw / t_lin:.1%} of raw GEMM throughput")
    print(f"linear with frozen weight and bias (LoRA's W0): {t_lin_frozen * 1e3:.2f} ms "
          f"({t_lin_frozen / t_lin:.2f}x the trainable step)")


if __name__ == "__main__":
    main()
