"""A Llama training step against a GPT-2 step of about the same parameter count, same process, alternated.

    PYTHONPATH=$PWD python benchmarks/bench_llama.py [--device cpu|cuda] [--rounds 8] [--shapes baby,medium]

One step = zero_grad, forward with targets, backward (no optimizer), float32, vocab 65.
GPT-2 shapes are bench_gpt's ("baby": 4 layers, 4 heads, width 128, block 64, batch 12;
"medium": 6 layers, 6 heads, width 384, block 256, batch 8). The Llama of each shape has
the same layers, heads and width, untied embeddings and an MLP of width 8/3 C (rounded to
8), so that its parameter count matches GPT-2's (three C x 8C/3 matrices against two
C x 4C ones; no position table, but an untied head); "llama-gqa" is the same with half
as many key/value heads. Each round times one GPT-2 step then one Llama step (the order
alternates between rounds, so drift hits both alike); the figure is the median over the
rounds of the per-round ratio Llama / GPT-2 (the issue's target: at most 1.15).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
from bench_gpt import SHAPES  # benchmarks/ is on sys.path when run as a script
from bench_ops import VOCAB, device_sync, gpt_and_batch

import minilora as ml
from minilora import backend
from minilora.nn import LlamaConfig, LlamaForCausalLM


def llama_and_batch(shape: dict, device: str, kv_div: int = 1) -> tuple[LlamaForCausalLM, object, object]:
    C = shape["n_embd"]
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=C, intermediate_size=int(round(8 * C / 3 / 8)) * 8,
                      num_hidden_layers=shape["n_layer"], num_attention_heads=shape["n_head"],
                      num_key_value_heads=shape["n_head"] // kv_div, max_position_embeddings=shape["block_size"])
    ml.manual_seed(0)
    model = LlamaForCausalLM(cfg).to(device)
    rng = np.random.default_rng(0)
    x = backend.to_device(rng.integers(0, VOCAB, (shape["batch"], shape["block_size"])), device)
    y = backend.to_device(rng.integers(0, VOCAB, (shape["batch"], shape["block_size"])), device)
    return model, x, y


def step_of(model: object, x: object, y: object) -> Callable[[], None]:
    def step() -> None:
        model.zero_grad()
        _, loss = model(x, y)
        loss.backward()

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--shapes", default="baby,medium")
    args = ap.parse_args()
    sync = device_sync(args.device)
    for name in args.shapes.split(","):
        shape = SHAPES[name]
        gpt, gx, gy = gpt_and_batch(shape, shape["block_size"], args.device)
        steps = {"gpt2": step_of(gpt, gx, gy)}
        counts = {"gpt2": gpt.num_parameters()}
        for label, div in (("llama", 1), ("llama-gqa", 2)):
            m, x, y = llama_and_batch(shape, args.device, div)
            steps[label], counts[label] = step_of(m, x, y), m.num_parameters()
        for s in steps.values():  # warm-up
            s()
            sync()
        times: dict[str, list[float]] = {k: [] for k in steps}
        for r in range(args.rounds):
            order = list(steps) if r % 2 == 0 else list(steps)[::-1]
            for k in order:
                t0 = time.perf_counter()
                steps[k]()
                sync()
                times[k].append(time.perf_counter() - t0)
        print(f"{name} (batch {shape['batch']}, T {shape['block_size']}, {args.device}, {args.rounds} rounds):")
        for k in steps:
            ratios = [a / b for a, b in zip(times[k], times["gpt2"])]
            print(f"  {k:10s} {counts[k]:>11,} parameters  median step {1e3 * statistics.median(times[k]):8.1f} ms"
                  + ("" if k == "gpt2" else f"  {k} / gpt2: median {statistics.median(ratios):.3f} "
                     f"(range {min(ratios):.3f}-{max(ratios):.3f})"))


if __name__ == "__main__":
    main()
