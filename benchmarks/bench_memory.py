"""Where a training step's memory goes, and what checkpointing, a 16-bit base and QLoRA change: one table.

    python benchmarks/bench_memory.py [--shapes medium smollm2] [--methods full lora qlora] [--rounds 3]
        [--device cpu|cuda] [--json PATH] [--plot PNG] [--from-json PATH ...]

Shapes (random weights, batch 4 x 256 tokens, AdamW):
- medium: GPT, 6 layers, n_embd 384, 6 heads, vocab 65 (the benchmark GPT of bench_gpt.py);
- smollm2: a Llama of SmolLM2-135M's shape (30 layers, hidden 576, intermediate 1536, 9 heads, 3 key/value
  heads, vocab 49,152, tied embeddings); its loss runs through the chunked LM head (F.linear_cross_entropy).
Settings: full fine-tuning, LoRA (r 8, all linear layers), QLoRA (the same on NF4 linear layers, block 64,
double quantisation), each with and without gradient checkpointing, on a float32 and a bfloat16 base (the
frozen base cast with .bfloat16()). Full fine-tuning has no bf16-base row (the table says so): it trains the
base itself, and a 16-bit trained model keeps float32 master weights (mixed precision, TrainConfig.precision),
whose weights, optimizer state and (float32) activations are the fp32 row's; on the CPU its 16-bit GEMMs
run in a generic loop, so it is not a row worth hours here.

Columns:
- resident: bytes held between steps, counted exactly: every parameter and buffer as stored (tied once) and
  the optimizer's state;
- step peak: the peak of NEW memory during one step above the resident bytes (activations the graph keeps,
  gradients, temporaries): tracemalloc on NumPy (NumPy reports every data allocation to it), the memory
  pool's high-water mark on CuPy; one traced step per row, after a warm-up step (the optimizer state and
  its flat buffers then exist);
- peak = resident + step peak;
- ms/step: the median over ``--rounds`` untraced steps; checkpointing off and on are timed alternately on
  the same model (off, on / on, off / ...), and "x time" is the median of the rounds' on/off ratios, so a
  ratio is measured in one run under the same load;
- CPU ms/step and "x CPU": the same for the process's CPU time (every thread's), a second view of the
  ratio (on the shared 2-core machine it moved with the wall clock: contention slows the CPU work too).

Where the time goes (SmolLM2 shape, QLoRA, 2-core CPU): building the random model 1.5-2 s, NF4-quantising
its 210 linear layers 3 s, one step 40-100 s loaded and 5-7 s idle (attention about half of it), a traced
step 1.1-2x an untraced one. So the steps are the cost: the warm-up step runs on ``WARMUP_T`` tokens (it
only has to create the optimizer state, which does not depend on the batch), the two traced steps are the
only traced ones, and each round adds two timed steps. A setting costs about (1.5 x 2 + 2 x rounds)
steps: ``--rounds 1`` at the SmolLM2 shape (16.5 min loaded), more where a step is cheap.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
from smollm2_base import SMOLLM2_135M  # benchmarks/ is on sys.path when run as a script
from tqdm import tqdm

import minilora as ml
from minilora import backend
from minilora.models import build_model
from minilora.peft import LoraConfig, get_peft_model
from minilora.train import TrainConfig, make_optimizer

SHAPES: dict[str, dict[str, Any]] = {
    "medium": {"family": "gpt2", "vocab_size": 65, "block_size": 256, "n_layer": 6, "n_head": 6, "n_embd": 384},
    "smollm2": {**SMOLLM2_135M, "max_position_embeddings": 256},
}
BATCH, T = 4, 256
WARMUP_T = 8  # tokens per row of the warm-up step: it creates the optimizer state, the same at any length
METHODS = ("full", "lora", "qlora")


def settings() -> list[tuple[str, str]]:
    """(method, base dtype) pairs; each is measured with and without checkpointing."""
    return [(m, b) for m in METHODS for b in ("float32", "bfloat16") if not (m == "full" and b == "bfloat16")]


def build(shape: str, method: str, base: str, device: str) -> tuple[Any, Any, Callable[..., float], Any]:
    """(model, optimizer, one training step returning its loss on the host, the batch) from seed 0.

    ``step(T=n)`` trains on the first n tokens of each row instead (the warm-up).
    """
    ml.manual_seed(0)
    model = build_model(SHAPES[shape]).to(device)
    if base != "float32":
        model.to(dtype=base)
    if method != "full":
        model = get_peft_model(model, LoraConfig(r=8, target_modules="all-linear", quantize=method == "qlora"))
    opt = make_optimizer(model, TrainConfig(lr=1e-4, weight_decay=0.0, device=device))
    rng = np.random.default_rng(0)
    V = SHAPES[shape]["vocab_size"]
    x = backend.to_device(rng.integers(0, V, (BATCH, T)), device)  # (B, T)
    y = backend.to_device(rng.integers(0, V, (BATCH, T)), device)  # (B, T)

    def step(T: int = T) -> float:
        opt.zero_grad()
        _, loss = model(x[:, :T], y[:, :T])
        loss.backward()
        opt.step()
        return loss.item()  # host: also waits for the device

    return model, opt, step, x


def resident_bytes(model: Any, opt: Any) -> dict[str, int]:
    """Exact bytes of weights (parameters and buffers as stored, tied once) and optimizer state."""
    weights = sum(int(p.data.nbytes) for p in model.parameters())
    weights += sum(int(getattr(b, "data", b).nbytes) for b in model.buffers())
    state = sum(int(a.nbytes) for st in opt.state.values() for a in st.values() if hasattr(a, "nbytes"))
    linear = sum(int(m.weight.data.nbytes) for m in model.modules() if type(m).__name__ == "Linear")
    return {"weights": weights, "optimizer_state": state, "linear_weights": linear}


def step_peak(step: Callable[[], float], device: str) -> int:
    """New bytes at the peak of one step, above what was allocated before it."""
    gc.collect()
    if device == "cpu":
        tracemalloc.start()
        step()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak
    pool = backend.module_for(device).get_default_memory_pool()
    pool.free_all_blocks()
    before = pool.used_bytes()
    step()
    return pool.total_bytes() - before  # the pool keeps what it allocated: its high-water mark


CKPT_LAYERS: int | None = None  # --ckpt-layers: checkpoint only the first k blocks (None: all but the last)


def _checkpointing(model: Any, on: bool) -> None:
    if on:
        model.gradient_checkpointing_enable(num_layers=CKPT_LAYERS)
    else:
        model.gradient_checkpointing_disable()


def measure(shape: str, method: str, base: str, rounds: int, device: str) -> list[dict[str, Any]]:
    """Two rows (checkpointing off, on) for one model: a traced step each, then ``rounds`` alternating pairs."""
    model, opt, step, _ = build(shape, method, base, device)
    step(T=WARMUP_T)  # the optimizer state (and its flat buffers) exists from here on
    res = resident_bytes(model, opt)
    peaks = {}
    for on in (False, True):
        _checkpointing(model, on)
        peaks[on] = step_peak(step, device)
    times: dict[bool, list[float]] = {False: [], True: []}
    cpu: dict[bool, list[float]] = {False: [], True: []}
    losses: dict[bool, float] = {}
    for r in range(rounds):
        for on in ((False, True) if r % 2 == 0 else (True, False)):  # ABBA: a drift in load cancels
            _checkpointing(model, on)
            t0, c0 = time.perf_counter(), time.process_time()
            losses[on] = step()
            times[on].append(time.perf_counter() - t0)
            cpu[on].append(time.process_time() - c0)
    ratio = statistics.median(t1 / t0 for t0, t1 in zip(times[False], times[True]))
    cpu_ratio = statistics.median(t1 / t0 for t0, t1 in zip(cpu[False], cpu[True]))
    rows = [{"shape": shape, "method": method, "base": base, "checkpointing": on, "rounds": rounds,
             "ms_per_step": 1e3 * statistics.median(times[on]), "time_ratio": ratio if on else None,
             "cpu_ms_per_step": 1e3 * statistics.median(cpu[on]), "cpu_ratio": cpu_ratio if on else None,
             "loss": losses[on], **res, "step_peak": peaks[on],
             "peak": res["weights"] + res["optimizer_state"] + peaks[on]} for on in (False, True)]
    del model, opt, step
    gc.collect()
    return rows


FULL_BF16 = "it trains the base itself: 16 bits there is fp32 master weights (mixed precision), the fp32 rows' memory"


def _mib(n: float) -> str:
    return f"{n / 2**20:,.1f}"


def table(rows: list[dict[str, Any]]) -> str:
    """The markdown table, with each checkpointed row's ratios to its pair and bf16 rows' base bytes ratio."""
    out = ["| shape | method | base | ckpt | ms/step | x time | CPU ms/step | x CPU | resident MiB "
           "| linear weights MiB | step peak MiB | x step peak | peak MiB |", "|---|---|---|---" + "|---:" * 9 + "|"]
    key = {(r["shape"], r["method"], r["base"], r["checkpointing"]): r for r in rows}
    for r in rows:
        pair = key.get((r["shape"], r["method"], r["base"], False))
        ratio = r.get("time_ratio") or (r["ms_per_step"] / pair["ms_per_step"] if pair else None)
        ratio_t = f"{ratio:.2f}" if r["checkpointing"] and ratio else ""
        ratio_m = f"{r['step_peak'] / pair['step_peak']:.2f}" if r["checkpointing"] and pair else ""
        cpu_ms, ratio_c = r.get("cpu_ms_per_step"), r.get("cpu_ratio")
        cpu_t = f"{cpu_ms:,.0f} | " if cpu_ms else " | "  # rows saved before the CPU columns have none
        cpu_t += f"{ratio_c:.2f}" if r["checkpointing"] and ratio_c else ""
        out.append(f"| {r['shape']} | {r['method']} | {r['base']} | {'on' if r['checkpointing'] else 'off'} | "
                   f"{r['ms_per_step']:,.0f} | {ratio_t} | {cpu_t} | {_mib(r['weights'] + r['optimizer_state'])} | "
                   f"{_mib(r['linear_weights'])} | {_mib(r['step_peak'])} | {ratio_m} | {_mib(r['peak'])} |")
        if r["method"] == "full" and r["checkpointing"] and (r["shape"], "full", "bfloat16", False) not in key:
            out.append(f"| {r['shape']} | full | bfloat16 | | n/a: {FULL_BF16} | | | | | | | | |")
    return "\n".join(out)


def plot(rows: list[dict[str, Any]], path: str) -> None:
    """Stacked bars per setting: weights, optimizer state, the step's peak above them (matplotlib)."""
    import matplotlib  # noqa: PLC0415  (optional extra)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    shapes = list(dict.fromkeys(r["shape"] for r in rows))
    fig, axes = plt.subplots(1, len(shapes), figsize=(6.5 * len(shapes), 4.2), squeeze=False)
    for ax, shape in zip(axes[0], shapes):
        rs = [r for r in rows if r["shape"] == shape]
        labels = [f"{r['method']}\n{'bf16' if r['base'] == 'bfloat16' else 'fp32'}"
                  f"{' ckpt' if r['checkpointing'] else ''}" for r in rs]
        x = np.arange(len(rs))
        parts = [("weights", [r["weights"] for r in rs]), ("optimizer state", [r["optimizer_state"] for r in rs]),
                 ("step peak: activations, gradients, temporaries", [r["step_peak"] for r in rs])]
        bottom = np.zeros(len(rs))
        for name, vals in parts:
            v = np.asarray(vals, float) / 2**20
            ax.bar(x, v, bottom=bottom, label=name)
            bottom += v
        ax.set_xticks(x, labels, fontsize=7)
        ax.set_ylabel("MiB")
        ax.set_title(f"{shape}: peak memory of one training step, batch {BATCH} x {T}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", nargs="+", choices=SHAPES, default=list(SHAPES))
    ap.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    ap.add_argument("--rounds", "--steps", type=int, default=3,
                    help="alternating off/on timed pairs per setting (each round is two steps)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--ckpt-layers", type=int, metavar="K",
                    help="checkpoint only the first K blocks (default: every block but the last)")
    ap.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    ap.add_argument("--plot", metavar="PNG", help="also draw the stacked bars (needs matplotlib)")
    ap.add_argument("--from-json", metavar="PATH", nargs="+", help="print (and plot) saved rows instead of measuring")
    args = ap.parse_args(argv)
    backend.module_for(args.device)  # a clear error when CUDA is missing
    global CKPT_LAYERS
    CKPT_LAYERS = args.ckpt_layers
    rows: list[dict[str, Any]] = []
    if args.from_json:
        for path in args.from_json:
            with open(path, encoding="utf-8") as f:
                rows += json.load(f)
    todo = [] if args.from_json else [(s, m, b) for s in args.shapes for m, b in settings() if m in args.methods]
    for shape, method, base in tqdm(todo, desc="bench_memory", unit="setting"):
        rows += measure(shape, method, base, args.rounds, args.device)
    print(f"bench_memory: batch {BATCH} x {T}, device {args.device}, {platform.processor() or platform.machine()}, "
          f"numpy {np.__version__}")
    print(table(rows))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=2)
    if args.plot:
        plot(rows, args.plot)
    return rows


if __name__ == "__main__":
    main()
