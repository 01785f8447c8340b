"""Autograd engine cost, measured in one run against plain NumPy doing the same math.

1. Overhead per op: a chain of tiny ops (y = tanh(y * w) + b, repeated; 3 ops per step,
   w and b shared so their gradients accumulate) forward and backward, against the
   same forward and hand-written backward in plain NumPy. The difference divided by
   the number of ops is what the engine adds to each op (graph, checks, dispatch).
2. A 1024x1024 linear layer (batch 1024, float32, bias, every input trainable)
   forward and backward, against the same three GEMMs in plain NumPy
   (x W^T, g_y W, g_y^T x): the share of raw matmul throughput the engine keeps.

    .venv/bin/python benchmarks/bench_engine.py [--steps 2000] [--repeats 10] [--json PATH]

Targets: overhead <= 10 us/op; linear >= 95% of raw throughput.
"""

from __future__ import annotations

import argparse
import json
import platform
from typing import Any

import numpy as np
from bench_ops import timed  # run as a script: benchmarks/ is on sys.path

import minilora as ml
from minilora import F

OPS_PER_STEP = 3


def engine_chain(steps: int, dtype: Any = np.float32) -> tuple[Any, Any, int]:
    """(minilora step, NumPy step, number of ops) for the tiny-op chain."""
    rng = np.random.default_rng(0)
    x0, w0, b0 = (rng.uniform(-0.5, 0.5, 4).astype(dtype) for _ in range(3))
    x, w, b = (ml.tensor(a, requires_grad=True) for a in (x0, w0, b0))

    def with_engine() -> None:
        for t in (x, w, b):
            t.grad = None
        y = x
        for _ in range(steps):
            y = (y * w).tanh() + b
        y.backward(ml.tensor(np.ones(4, dtype)))

    def plain_numpy() -> None:
        saved = []
        y = x0
        for _ in range(steps):
            t = np.tanh(y * w0)
            saved.append((y, t))
            y = t + b0
        g = np.ones(4, dtype)
        g_w = np.zeros(4, dtype)
        g_b = np.zeros(4, dtype)
        for y_prev, t in reversed(saved):
            g_b += g
            g_m = g * (1 - t * t)
            g_w += g_m * y_prev
            g = g_m * w0

    return with_engine, plain_numpy, steps * OPS_PER_STEP


def linear_layer(n: int = 1024) -> tuple[Any, Any]:
    """(minilora forward+backward, the three raw GEMMs) of an n x n linear layer, batch n, float32."""
    rng = np.random.default_rng(0)
    xa = rng.standard_normal((n, n)).astype(np.float32)
    wa = (rng.standard_normal((n, n)) / np.sqrt(n)).astype(np.float32)
    ba = np.zeros(n, np.float32)
    ga = rng.standard_normal((n, n)).astype(np.float32)
    x, w, b = (ml.tensor(a, requires_grad=True) for a in (xa, wa, ba))
    g = ml.tensor(ga)
    lin = getattr(F, "linear", None) or (lambda x_, w_, b_: x_ @ w_.T + b_)

    def with_engine() -> None:
        for t in (x, w, b):
            t.grad = None
        lin(x, w, b).backward(g)

    def raw() -> None:
        _ = xa @ wa.T
        _ = ga @ wa
        _ = ga.T @ xa

    return with_engine, raw


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=2000, help="chain steps (3 ops each)")
    ap.add_argument("--repeats", type=int, default=10, help="best of this many timed runs (interleaved)")
    ap.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = ap.parse_args()

    chain, chain_np, n_ops = engine_chain(args.steps)
    t_chain, t_chain_np = timed([chain, chain_np], args.repeats, lambda: None)
    per_op = t_chain / n_ops * 1e6
    per_op_np = t_chain_np / n_ops * 1e6
    overhead = per_op - per_op_np

    lin, raw = linear_layer()
    t_raw, t_lin = timed([raw, lin], args.repeats, lambda: None)
    share = t_raw / t_lin

    rows = [
        ("tiny ops, forward+backward (minilora)", f"{per_op:.2f} us/op", ""),
        ("tiny ops, same math in plain NumPy", f"{per_op_np:.2f} us/op", ""),
        ("engine overhead per op", f"{overhead:.2f} us/op", "pass" if overhead <= 10 else "MISS (target <= 10)"),
        ("linear 1024x1024 fwd+bwd (minilora)", f"{t_lin * 1e3:.1f} ms", ""),
        ("3 raw NumPy GEMMs", f"{t_raw * 1e3:.1f} ms", ""),
        ("share of raw GEMM throughput", f"{share:.1%}", "pass" if share >= 0.95 else "MISS (target >= 95%)"),
    ]
    print(f"minilora engine benchmark: {platform.processor() or platform.machine()}, NumPy {np.__version__}, "
          f"{n_ops} ops in the chain, best of {args.repeats}")
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for name, value, verdict in rows:
        print(f"{name:<{widths[0]}}  {value:>{widths[1]}}  {verdict}")
    if args.json:
        figures = {"us_per_op": per_op, "numpy_us_per_op": per_op_np, "overhead_us_per_op": overhead,
                   "linear_ms": t_lin * 1e3, "raw_gemm_ms": t_raw * 1e3, "raw_throughput_share": share}
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
