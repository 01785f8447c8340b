"""One benchmark of every fine-tuning method on two shapes, written to docs/benchmarks.md with the machine.

    .venv/bin/python benchmarks/run.py [--shapes baby,medium] [--repeats 3] [--no-memory] [--device cpu|cuda]
                                       [--out docs/benchmarks.md] [--json PATH]
                                       [--torch-python PATH] [--torch-rounds 5] [--no-torch]

For each shape (bench_gpt.SHAPES: "baby" n_layer 4, n_head 4, n_embd 128, block 64, batch 12;
"medium" n_layer 6, n_head 6, n_embd 384, block 256, batch 8; vocab 65) and each method
(bench_peft.METHODS, built by bench_peft.setup on the same model and batch):

- ms/step: forward + backward + AdamW step, best of ``--repeats``, the methods interleaved so
  that machine noise hits them alike (bench_ops.timed);
- tokens/s: batch x window / step time (window = block - 16, bench_peft's, so the 10 virtual
  tokens of prefix/prompt tuning fit);
- MFU: the step's model FLOPs / step time / raw float32 GEMM throughput measured in this run
  (bench_gpt.raw_matmul_flops). Model FLOPs per token are nanoGPT's 6 N + 12 L C T for full
  fine-tuning, and 4 N + 12 L C T when the base is frozen: no weight-gradient GEMM (2 N) is done
  for frozen weights, so that work is neither done nor credited (adapters' own FLOPs are tiny);
- weights: every parameter and buffer as stored (bench_peft.weight_bytes); peak: tracemalloc's
  peak of live NumPy memory over two training steps, weights and optimizer state included
  (bench_peft.peak_bytes; CPU only).

Then (CPU only) the side-by-side comparison with PyTorch eager and PEFT of benchmarks/vs_torch.py
(its own section; skipped with one line when ``--torch-python`` has no torch).

The helpers come from bench_ops, bench_gpt and bench_peft (benchmarks/ is on sys.path when this
file runs as a script); this file only puts them together and writes the page.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import sys
from typing import Any

import numpy as np
from bench_gpt import SHAPES, raw_matmul_flops
from bench_ops import device_sync, gpt_config, timed
from bench_peft import METHODS, peak_bytes, setup, weight_bytes
from tqdm import tqdm
from vs_torch import markdown as torch_markdown
from vs_torch import probe
from vs_torch import run as torch_run

from minilora import backend
from minilora.nn import GPT, GPTConfig

PROMPT_ROOM = 16  # bench_peft.setup's batch is (batch, block_size - 16)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ----------------------------------------------------------------------------- the machine
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def blas_info() -> str:
    """The BLAS NumPy was built against (name and version), as np.show_config reports it."""
    try:
        cfg = np.show_config(mode="dicts")  # NumPy >= 1.25
        blas = cfg["Build Dependencies"]["blas"]
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # older NumPy: no dict mode
        return "unknown"


def machine() -> dict[str, Any]:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu_model(), "cores": cores, "numpy": np.__version__, "blas": blas_info(),
        "python": platform.python_version(), "os": f"{platform.system()} {platform.release()}",
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


# ----------------------------------------------------------------------------- measuring
def base_params(shape: dict) -> tuple[int, GPTConfig]:
    """N of nanoGPT's FLOP estimate: the plain model's parameters without the position table."""
    cfg = gpt_config(shape)
    model = GPT(cfg)
    return model.num_parameters() - model.transformer.wpe.weight.size, cfg


def model_flops(method: str, n: int, cfg: GPTConfig, batch: int, t: int) -> float:
    per_token = (6 if method == "full" else 4) * n + 12 * cfg.n_layer * cfg.n_embd * t
    return per_token * batch * t


def bench_shape(name: str, device: str, repeats: int, memory: bool, raw: float, sync: Any) -> list[dict[str, Any]]:
    shape = SHAPES[name]
    n, cfg = base_params(shape)
    t = shape["block_size"] - PROMPT_ROOM
    built = {m: setup(m, shape, device) for m in tqdm(METHODS, desc=f"{name}: build", leave=False)}
    steps = [built[m][2] for m in METHODS]
    times = timed(steps, repeats, sync)
    rows = []
    for (m, (model, opt, _)), sec in zip(built.items(), times):
        trainable, total = model.get_nb_trainable_parameters()
        flops = model_flops(m, n, cfg, shape["batch"], t)
        rows.append({
            "method": m, "ms_per_step": 1e3 * sec, "tokens_per_s": shape["batch"] * t / sec,
            "model_gflops_per_step": flops / 1e9, "mfu": flops / sec / raw, "trainable": trainable,
            "trainable_pct": 100 * trainable / total, "optimizer_state": opt.state_size(),
            "weight_bytes": weight_bytes(model)[0],
        })
    del built, steps
    gc.collect()
    if memory and device == "cpu":
        for row in tqdm(rows, desc=f"{name}: peak memory", leave=False):
            row["peak_bytes"] = peak_bytes(row["method"], shape)
    return rows


# ----------------------------------------------------------------------------- the page
def _mib(b: float | None) -> str:
    return "-" if b is None else f"{b / 2**20:,.2f} MiB"


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    load = m["load_average"]
    out = [
        "# Benchmarks: every fine-tuning method, one table per shape",
        "",
        "Generated by `python benchmarks/run.py` (see its docstring for exactly what is timed); "
        "ratios are measured in one run, so they hold better across machines than the absolute times.",
        "",
        "| machine | |", "|---|---|",
        f"| CPU | {m['cpu']} |", f"| cores | {m['cores']} |", f"| NumPy | {m['numpy']} |", f"| BLAS | {m['blas']} |",
        f"| Python | {m['python']} ({m['os']}) |", f"| device | {results['device']} |",
        f"| date | {m['date']} |",
        f"| load average at start | {' / '.join(f'{x:.1f}' for x in load) if load else '-'} |",
        f"| raw float32 GEMM | {results['raw_matmul_gflops']:.1f} GFLOP/s (best of square 1024 and 2048 matmuls) |",
        f"| repeats | best of {results['repeats']} |",
        "",
    ]
    for name, rows in results["shapes"].items():
        s = SHAPES[name]
        full = rows[0]
        out += [
            f"## {name}: n_layer {s['n_layer']}, n_head {s['n_head']}, n_embd {s['n_embd']}, block {s['block_size']}, "
            f"batch {s['batch']} (window {s['block_size'] - PROMPT_ROOM} tokens)",
            "",
            "| method | ms/step | x full | tokens/s | GFLOP/step | MFU | trainable | trainable % | optimizer state "
            "| weights | peak memory | peak x full |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in rows:
            peak, fpeak = r.get("peak_bytes"), full.get("peak_bytes")
            out.append(
                f"| {r['method']} | {r['ms_per_step']:.1f} | {r['ms_per_step'] / full['ms_per_step']:.2f} | "
                f"{r['tokens_per_s']:,.0f} | {r['model_gflops_per_step']:.3f} | {100 * r['mfu']:.1f}% | "
                f"{r['trainable']:,} | {r['trainable_pct']:.3f}% | {r['optimizer_state']:,} | "
                f"{_mib(r['weight_bytes'])} | {_mib(peak)} | {f'{peak / fpeak:.2f}' if peak and fpeak else '-'} |"
            )
        out.append("")
    out += [
        "MFU counts 6 N + 12 L C T FLOPs per token for full fine-tuning and 4 N + 12 L C T for the methods with a "
        "frozen base (they skip the weight-gradient GEMMs, so that work is neither done nor credited); "
        "N = parameters without the position table. Peak memory is tracemalloc's peak of live NumPy memory over "
        "two training steps, weights and optimizer state included. The raw GEMM rate (MFU's denominator) is "
        "measured in the same run and itself varies from run to run on a shared machine, so compare MFU within "
        "one page.",
        "",
    ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default="baby,medium", help="comma-separated subset of baby,medium")
    ap.add_argument("--repeats", type=int, default=3, help="best of this many steps per method (default 3)")
    ap.add_argument("--no-memory", action="store_true", help="skip the tracemalloc peak-memory runs")
    ap.add_argument("--device", default="cpu", choices=backend.DEVICES)
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "benchmarks.md"), help="the Markdown page to write")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    ap.add_argument("--torch-python", default=os.environ.get("MINILORA_TORCH_PYTHON", sys.executable),
                    help="interpreter with torch and peft for the vs_torch section (default $MINILORA_TORCH_PYTHON)")
    ap.add_argument("--torch-rounds", type=int, default=5, help="vs_torch's alternating rounds (default 5)")
    ap.add_argument("--no-torch", action="store_true", help="skip the comparison with PyTorch")
    args = ap.parse_args(argv)
    shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    bad = [s for s in shapes if s not in ("baby", "medium")]
    if bad or not shapes:
        ap.error(f"--shapes: unknown shape(s) {bad}; choose from baby, medium")
    if args.device == "cuda" and not backend.cuda_available():
        ap.error(f"--device cuda: {backend.cuda_unavailable_reason()}")
    sync = device_sync(args.device)

    results: dict[str, Any] = {"machine": machine(), "device": args.device, "repeats": args.repeats}
    raw = raw_matmul_flops(args.device, max(2, args.repeats), sync)
    results["raw_matmul_gflops"] = raw / 1e9
    results["shapes"] = {s: bench_shape(s, args.device, args.repeats, not args.no_memory, raw, sync) for s in shapes}
    page = markdown(results)
    if args.device == "cpu" and not args.no_torch:
        if probe(args.torch_python, "torch") is None:
            print(f"vs_torch: skipped: torch does not import under {args.torch_python}", file=sys.stderr)
        else:
            results["vs_torch"] = torch_run(shapes, args.torch_rounds, args.torch_python)
            page += "\n" + torch_markdown(results["vs_torch"])
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(page)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
    print(page)
    print(f"wrote {args.out}", file=sys.stderr)
    return results


if __name__ == "__main__":
    main()
