"""Speed and memory of every fine-tuning method on the same model and batch, in one run and one table.

    .venv/bin/python benchmarks/bench_peft.py [--shape medium|wide|baby] [--device cpu|cuda] [--repeats 3] [--json PATH]

One step = zero_grad, forward with targets, backward, AdamW step (the optimizer built by
minilora.train.make_optimizer's grouping: decay on matrices only). Shapes as in bench_gpt.py (vocab 65), plus
"wide" (GPT-2 small's width 768, 4 layers, block 128, batch 8), where the Linear layers' GEMMs dominate the
step as they do in real models. Every method sees the same batch of T = block_size - 16 tokens (so the 10 soft
prompt positions of prompt tuning fit in the block). Methods use the CLI's defaults: LoRA/DoRA r 8 on c_attn,
QLoRA the same on a base whose Linear layers (all but the tied head) are NF4 with block 64 and double
quantisation, IA3 on c_attn and mlp.c_proj, Houlsby adapters with bottleneck 16, prefix and prompt tuning with
10 virtual tokens.

Columns:
- ms/step: best of ``--repeats`` steps, the methods interleaved so that machine noise hits them alike;
- trainable: parameters with requires_grad; optimizer state: numbers the optimizer holds (Adam moments);
- weights: bytes of every parameter and buffer as stored (tied head once; NF4 codes and scales as stored);
- peak: peak bytes of live NumPy arrays during two training steps (CPU only), measured with tracemalloc,
  which NumPy reports every data allocation to; it includes the weights, gradients, optimizer state and the
  activations the graph keeps for backward. Each method is measured alone, after its setup and a
  gc.collect(), so leftovers from building the model (e.g. the float weights QLoRA quantised away) are freed
  before the window opens.
Targets (issue "Fine-tuning methods"): LoRA step <= 0.70x full; QLoRA weight storage <= 0.14x float32 (of the
quantised layers; the whole model's ratio is printed too); LoRA and QLoRA peak memory below full's.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
from bench_ops import device_sync, gpt_and_batch, timed  # benchmarks/ is on sys.path when run as a script

from minilora.peft import get_peft_model, registry
from minilora.peft.qlora import storage_report
from minilora.train import TrainConfig, make_optimizer

SHAPES = {
    "baby": dict(n_layer=4, n_head=4, n_embd=128, block_size=64, batch=12),
    "medium": dict(n_layer=6, n_head=6, n_embd=384, block_size=256, batch=8),
    "wide": dict(n_layer=4, n_head=12, n_embd=768, block_size=128, batch=8),  # GPT-2 small's width
}
METHODS: dict[str, Callable[[], Any]] = {  # every registered method, with its default config
    name: (lambda m=m, v=v: m.config(v.name)) for name, (m, v) in registry.variants().items()
}


def setup(method: str, shape: dict, device: str) -> tuple[Any, Any, Callable[[], None]]:
    """(peft model, optimizer, one training step) for ``method`` on a fresh model from seed 0."""
    base, x, y = gpt_and_batch(shape, shape["block_size"] - 16, device)
    model = get_peft_model(base, METHODS[method]())
    wd = registry.get_variant(method)[1].weight_decay
    opt = make_optimizer(model, TrainConfig(lr=1e-4, weight_decay=wd, device=device))

    def step() -> None:
        opt.zero_grad()
        _, loss = model(x, y)
        loss.backward()
        opt.step()

    return model, opt, step


def weight_bytes(model: Any) -> tuple[int, int]:
    """(bytes as stored, bytes in float32) of every parameter and buffer; NF4 layers as stored."""
    rep = storage_report(model)
    return rep.model_bytes, rep.model_float32_bytes


def peak_bytes(method: str, shape: dict) -> int:
    """Peak traced NumPy memory over two steps, weights and optimizer state included (CPU)."""
    gc.collect()
    tracemalloc.start()
    model, opt, step = setup(method, shape, "cpu")
    step()  # the optimizer state now exists
    gc.collect()
    tracemalloc.reset_peak()
    step()
    step()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    del model, opt, step
    gc.collect()
    return peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", choices=SHAPES, default="medium")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = ap.parse_args()
    sync = device_sync(args.device)

    shape = SHAPES[args.shape]
    built = {m: setup(m, shape, args.device) for m in METHODS}
    times = timed([built[m][2] for m in METHODS], args.repeats, sync)
    rows = []
    for (m, (model, opt, _)), t in zip(built.items(), times):
        trainable, total = model.get_nb_trainable_parameters()
        stored, f32 = weight_bytes(model)
        rows.append({"method": m, "ms_per_step": 1e3 * t, "trainable": trainable,
                     "trainable_pct": 100 * trainable / total,
                     "optimizer_state": opt.state_size(), "weight_bytes": stored, "weight_vs_float32": stored / f32})
    quantised = storage_report(built["qlora"][0])
    del built
    gc.collect()
    if args.device == "cpu":
        for row in rows:
            row["peak_bytes"] = peak_bytes(row["method"], shape)
    full = rows[0]
    print(f"bench_peft: shape {args.shape} {shape}, T {shape['block_size'] - 16}, device {args.device}, "
          f"{platform.processor() or platform.machine()}, numpy {np.__version__}")
    head = f"{'method':<8} {'ms/step':>9} {'x full':>7} {'trainable':>11} {'%':>7} {'optim state':>12} " \
           f"{'weights':>12} {'x f32':>6} {'peak':>12} {'x full':>7}"
    print(head)
    print("-" * len(head))
    for r in rows:
        peak = r.get("peak_bytes")
        peak_txt = f"{peak:>12,} {peak / full['peak_bytes']:>7.2f}" if peak else f"{'-':>12} {'-':>7}"
        print(f"{r['method']:<8} {r['ms_per_step']:>9.1f} {r['ms_per_step'] / full['ms_per_step']:>7.2f} "
              f"{r['trainable']:>11,} {r['trainable_pct']:>7.3f} {r['optimizer_state']:>12,} "
              f"{r['weight_bytes']:>12,} {r['weight_vs_float32']:>6.3f} {peak_txt}")
    print(f"QLoRA quantised layers: {quantised}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"shape": args.shape, "device": args.device, "rows": rows, "qlora_ratio": quantised.ratio},
                      f, indent=2)


if __name__ == "__main__":
    main()
