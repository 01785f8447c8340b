"""minilora against PyTorch eager (full fine-tuning) and PEFT (LoRA): one training step, side by side.

    python benchmarks/vs_torch.py [--shapes baby,medium] [--rounds 5] [--torch-python PATH] [--threads N]
                                  [--methods full,lora] [--json PATH]

The PyTorch side runs under ``--torch-python`` (default: $MINILORA_TORCH_PYTHON, else this interpreter),
so torch and peft never need to be installed next to minilora; without torch the script prints one line
and exits 0 (PEFT missing: the LoRA rows are skipped). Torch is never a dependency of minilora.

What is timed: one step = zero_grad, forward with targets, backward, AdamW step (lr 1e-4, betas
(0.9, 0.99), eps 1e-8; weight decay 0.1 on matrices and 0 elsewhere for full fine-tuning, 0 for LoRA),
on nanoGPT's model (benchmarks/torch_gpt.py; minilora.nn.GPT has the same parameter names), vocab 65,
float32, no dropout, GPT-2's tanh GELU, the head tied to the token embedding. LoRA: r 8, alpha 16 on
c_attn (minilora's LoraConfig defaults; PEFT's LoraConfig with the same numbers). Both sides load the
same weights, LoRA A matrices and batch from one file, and the first losses are checked to agree.

Each measurement is its own process (two thread pools in one process fight): minilora, PyTorch and a
raw NumPy GEMM "floor" process, alternating (the order flips every round) for ``--rounds`` rounds. A
process does a few warm-up steps, then times ``steps`` steps and reports their median. The table gives
medians over rounds; a ratio is the median of the per-round ratios. Both libraries use their default
thread counts (OpenBLAS and torch: every core) unless ``--threads N`` sets every pool of both to N;
minilora's worker gets minilora's OpenBLAS setting (``OPENBLAS_THREAD_TIMEOUT=20``, minilora/blas_threads.py).
Peak RSS is the process's high-water mark (VmHWM, with imports); "step RSS" is the growth of the
high-water mark from the built model to the end of the steps
(gradients, optimizer state, activations; /proc/self/clear_refs resets the mark after set-up).

GEMM floor: the raw float32 NumPy matmuls the step cannot avoid at these shapes, timed alone in the
same run: per Linear the forward, input-gradient and (full only) weight-gradient products; per layer
attention's six batched products (scores, weighted values, and their four gradients; the causal half
not skipped, so the floor is slightly high there). The LoRA floor drops every frozen weight's gradient
and the first layer's input gradient (nothing trainable lies below it); the rank-8 products are left out.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
VOCAB = 65
SHAPES = {  # T = tokens per sequence timed (medium: block 256, window 240 as bench_peft)
    "baby": dict(n_layer=4, n_head=4, n_embd=128, block_size=64, batch=12, T=64),
    "medium": dict(n_layer=6, n_head=6, n_embd=384, block_size=256, batch=8, T=240),
}
STEPS = {"baby": (5, 20), "medium": (2, 5)}  # (warm-up, timed) steps per process
LR, BETAS, EPS, WD, R, ALPHA = 1e-4, (0.9, 0.99), 1e-8, 0.1, 8, 16


# ----------------------------------------------------------------------------- inside a worker process
def _rss() -> dict[str, int]:
    """VmRSS and VmHWM of this process, bytes."""
    out = {}
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1]) * 1024
    return out


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")  # 5: reset the peak-RSS mark (Linux >= 4.0)
        return True
    except OSError:
        return False


def _stepper(model: Any, opt: Any, x: Any, y: Any) -> Any:
    """One training step, the same calls on both libraries; returns the loss."""

    def step() -> Any:
        opt.zero_grad()
        _, loss = model(x, y)
        loss.backward()
        opt.step()
        return loss

    return step


def _time_steps(step: Any, loss_of: Any, warmup: int, steps: int, setup_peak: int) -> dict[str, Any]:
    rss0 = _rss()["VmRSS"]
    reset = _reset_hwm()
    times, cpu, losses = [], [], []
    for i in range(warmup + steps):
        t0, c0 = time.perf_counter(), time.process_time()
        loss = step()
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        losses.append(loss_of(loss))
        if i >= warmup:
            times.append(dt)
            cpu.append(dc)
    hwm = _rss()["VmHWM"]
    return {"median_s": statistics.median(times), "times": times, "cpu_s": statistics.median(cpu),
            "first_loss": losses[0], "last_loss": losses[-1],
            "peak_rss": max(hwm, setup_peak), "step_rss": hwm - rss0 if reset else None}


def worker_minilora(shape: dict, method: str, data: dict, warmup: int, steps: int) -> dict[str, Any]:
    import minilora as ml  # noqa: PLC0415
    from minilora.nn import GPT, GPTConfig  # noqa: PLC0415
    from minilora.optim import AdamW, param_groups  # noqa: PLC0415
    from minilora.peft import LoraConfig, get_peft_model  # noqa: PLC0415

    cfg = GPTConfig(VOCAB, shape["block_size"], shape["n_layer"], shape["n_head"], shape["n_embd"])
    model = GPT(cfg)
    model.load_state_dict({k[3:]: v for k, v in data.items() if k.startswith("sd.")})
    if method == "lora":
        model = get_peft_model(model, LoraConfig(r=R, lora_alpha=ALPHA, target_modules=("c_attn",)))
        for name, p in model.named_parameters():
            if name.endswith("lora_A"):
                p.data[...] = data["lora." + name.split(".h.")[1].split(".")[0]]
    opt = AdamW(param_groups(model, WD if method == "full" else 0.0), lr=LR, betas=BETAS, eps=EPS)
    x, y = data["x"], data["y"]

    info = _time_steps(_stepper(model, opt, x, y), lambda t: float(t.data), warmup, steps, _rss()["VmHWM"])  # host
    return {**info, "threads": os.environ.get("OPENBLAS_NUM_THREADS", "default"), "version": ml.__version__}


def worker_torch(shape: dict, method: str, data: dict, warmup: int, steps: int) -> dict[str, Any]:
    import torch  # noqa: PLC0415
    from torch_gpt import GPT  # noqa: PLC0415

    model = GPT(VOCAB, shape["block_size"], shape["n_layer"], shape["n_head"], shape["n_embd"])
    sd = {k[3:]: torch.from_numpy(v) for k, v in data.items() if k.startswith("sd.")}
    model.load_state_dict(sd, strict=True)
    version = f"torch {torch.__version__}"
    if method == "lora":
        import peft  # noqa: PLC0415

        config = peft.LoraConfig(r=R, lora_alpha=ALPHA, lora_dropout=0.0, target_modules=["c_attn"], bias="none")
        model = peft.get_peft_model(model, config)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith("lora_A.default.weight"):
                    p.copy_(torch.from_numpy(data["lora." + name.split(".h.")[1].split(".")[0]]))
        version += f", peft {peft.__version__}"
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    rest = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    wd = WD if method == "full" else 0.0
    groups = [g for g in ({"params": decay, "weight_decay": wd}, {"params": rest, "weight_decay": 0.0}) if g["params"]]
    opt = torch.optim.AdamW(groups, lr=LR, betas=BETAS, eps=EPS)
    x, y = torch.from_numpy(data["x"]), torch.from_numpy(data["y"])

    info = _time_steps(_stepper(model, opt, x, y), lambda t: float(t.item()), warmup, steps, _rss()["VmHWM"])
    return {**info, "threads": torch.get_num_threads(), "version": version}


def _gemms(shape: dict, method: str) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """(a shape, b shape) of every matmul the step cannot avoid (see the module docstring)."""
    B, T, C, L, nh = shape["batch"], shape["T"], shape["n_embd"], shape["n_layer"], shape["n_head"]
    N, hs, full = B * T, C // nh, method == "full"
    out: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
    linears = [(i, fi, fo) for i in range(L) for fi, fo in ((C, 3 * C), (C, C), (C, 4 * C), (4 * C, C))]
    for layer, fi, fo in [*linears, (L, C, VOCAB)]:
        out.append(((N, fi), (fi, fo)))  # forward
        if full or layer > 0 or fo != 3 * C:
            out.append(((N, fo), (fo, fi)))  # input gradient
        if full:
            out.append(((fo, N), (N, fi)))  # weight gradient
    for _ in range(L):
        q, s = (B, nh, T, hs), (B, nh, T, T)
        kt = (B, nh, hs, T)
        out += [(q, kt), (s, q), (q, kt), (s, q), (s, q), (s, q)]  # scores, values, g_att, g_v, g_q, g_k
    return out


def worker_floor(shape: dict, method: str, reps: int = 5) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    pairs = [(rng.standard_normal(a, dtype=np.float32), rng.standard_normal(b, dtype=np.float32))
             for a, b in _gemms(shape, method)]
    best = float("inf")
    for _ in range(reps + 1):
        t0 = time.perf_counter()
        for a, b in pairs:
            a @ b
        best = min(best, time.perf_counter() - t0)
    flops = sum(2 * a.size * b.shape[-1] for a, b in pairs)
    return {"median_s": best, "gflops": flops / best / 1e9}


def worker_main(args: argparse.Namespace) -> None:
    shape = SHAPES[args.shape]
    if args.worker == "floor":
        info = worker_floor(shape, args.method)
    else:
        data = dict(np.load(args.data))
        warmup, steps = STEPS[args.shape]
        fn = worker_minilora if args.worker == "minilora" else worker_torch
        info = fn(shape, args.method, data, warmup, steps)
    print("RESULT " + json.dumps(info))


# ----------------------------------------------------------------------------- the parent
def write_data(shape: dict, path: str) -> None:
    """The weights (minilora's GPT from seed 0), rank-8 LoRA A matrices and a batch, in one .npz."""
    import minilora as ml  # noqa: PLC0415
    from minilora.nn import GPT, GPTConfig  # noqa: PLC0415

    ml.manual_seed(0)
    model = GPT(GPTConfig(VOCAB, shape["block_size"], shape["n_layer"], shape["n_head"], shape["n_embd"]))
    arrays = {"sd." + k: np.ascontiguousarray(v) for k, v in model.state_dict().items()}
    rng = np.random.default_rng(0)
    C = shape["n_embd"]
    for i in range(shape["n_layer"]):  # kaiming-uniform A as LoRA initialises it; B stays zero on both sides
        arrays[f"lora.{i}"] = rng.uniform(-1 / np.sqrt(C), 1 / np.sqrt(C), (R, C)).astype(np.float32)
    arrays["x"] = rng.integers(0, VOCAB, (shape["batch"], shape["T"]))
    arrays["y"] = rng.integers(0, VOCAB, (shape["batch"], shape["T"]))
    np.savez(path, **arrays)


THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "MINILORA_NUM_THREADS")


def run_worker(python: str, kind: str, shape: str, method: str, data: str, threads: int | None = None
               ) -> dict[str, Any]:
    from minilora import blas_threads  # noqa: PLC0415  (never imported by the torch worker: no minilora there)

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, HERE, os.environ.get("PYTHONPATH", "")])}
    if threads:  # every library's pool at this size (torch reads OMP_NUM_THREADS at import)
        env.update({k: str(threads) for k in THREAD_VARS})
    if kind == "minilora" and env.get(blas_threads.ENV_VAR, "1") != "0":
        # what `import minilora` sets when it comes before NumPy (minilora/blas_threads.py); this script
        # imports NumPy first, so the worker gets it here
        env.setdefault(blas_threads.OPENBLAS_VAR, blas_threads.TIMEOUT)
    cmd = [python, os.path.abspath(__file__), "--worker", kind, "--shape", shape, "--method", method, "--data", data]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"vs_torch: the {kind} worker ({shape}, {method}) failed:\n{proc.stderr[-2000:]}")


def probe(python: str, module: str) -> str | None:
    """The module's version under ``python``, or None when it does not import."""
    try:
        proc = subprocess.run([python, "-c", f"import {module}; print({module}.__version__)"],
                              capture_output=True, text=True, check=False)
    except OSError:  # no such interpreter
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def run(shapes: list[str], rounds: int, torch_python: str, methods: tuple[str, ...] = ("full", "lora"),
        threads: int | None = None) -> dict:
    """Every (shape, method) pair, ``rounds`` alternating rounds; raw per-process results and the summary."""
    if probe(torch_python, "peft") is None:
        methods = tuple(m for m in methods if m != "lora")
    raw: dict[str, dict[str, list[dict]]] = {}
    load = [os.getloadavg()]
    from tqdm import tqdm  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for s in shapes:
            files[s] = os.path.join(tmp, f"{s}.npz")
            write_data(SHAPES[s], files[s])
        jobs = [(s, m) for s in shapes for m in methods]
        bar = tqdm(total=rounds * len(jobs) * 3, desc="vs_torch", leave=False)
        for r in range(rounds):
            for s, m in jobs:
                order = ["minilora", "torch", "floor"] if r % 2 == 0 else ["floor", "torch", "minilora"]
                for kind in order:
                    python = torch_python if kind == "torch" else sys.executable
                    raw.setdefault(f"{s}/{m}", {}).setdefault(kind, []).append(
                        run_worker(python, kind, s, m, files[s], threads))
                    bar.update()
        bar.close()
    load.append(os.getloadavg())
    return {"raw": raw, "rows": summarise(raw), "load": load, "rounds": rounds, "threads": threads,
            "torch": probe(torch_python, "torch"), "peft": probe(torch_python, "peft"), "numpy": np.__version__}


def summarise(raw: dict[str, dict[str, list[dict]]]) -> list[dict[str, Any]]:
    med = statistics.median
    rows = []
    for key, by in raw.items():
        shape, method = key.split("/")
        ml_t = [x["median_s"] for x in by["minilora"]]
        th_t = [x["median_s"] for x in by["torch"]]
        fl_t = [x["median_s"] for x in by["floor"]]
        ratios = [a / b for a, b in zip(ml_t, th_t)]
        loss_gap = max(abs(a["first_loss"] - b["first_loss"]) for a, b in zip(by["minilora"], by["torch"]))
        rows.append({
            "shape": shape, "method": method, "minilora_ms": 1e3 * med(ml_t), "torch_ms": 1e3 * med(th_t),
            "ratio": med(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
            "floor_ms": 1e3 * med(fl_t), "floor_gflops": med(x["gflops"] for x in by["floor"]),
            "minilora_over_floor": med(a / b for a, b in zip(ml_t, fl_t)),
            "torch_over_floor": med(a / b for a, b in zip(th_t, fl_t)),
            "minilora_peak_rss": med(x["peak_rss"] for x in by["minilora"]),
            "torch_peak_rss": med(x["peak_rss"] for x in by["torch"]),
            "minilora_step_rss": _med_or_none([x["step_rss"] for x in by["minilora"]]),
            "torch_step_rss": _med_or_none([x["step_rss"] for x in by["torch"]]),
            "minilora_cpu_ms": 1e3 * med(x["cpu_s"] for x in by["minilora"]),
            "torch_cpu_ms": 1e3 * med(x["cpu_s"] for x in by["torch"]),
            "first_loss_gap": loss_gap, "torch_threads": by["torch"][0]["threads"],
        })
    return rows


def _med_or_none(xs: list[Any]) -> float | None:
    return None if any(x is None for x in xs) else statistics.median(xs)


def _mib(b: float | None) -> str:
    return "-" if b is None else f"{b / 2**20:.0f}"


def markdown(results: dict[str, Any]) -> str:
    lo, hi = results["load"]
    out = [
        "## minilora vs PyTorch eager and PEFT (one training step, each in its own process)",
        "",
        f"`python benchmarks/vs_torch.py` (see its docstring): NumPy {results['numpy']}, PyTorch {results['torch']}, "
        f"PEFT {results['peft'] or '-'}; threads: {results.get('threads') or 'each library its default'}; "
        f"{results['rounds']} alternating rounds, medians; load average "
        f"{lo[0]:.1f} at the start, {hi[0]:.1f} at the end. *ratio* = minilora / PyTorch (full) or / PEFT (LoRA), "
        "the median of the per-round ratios [min-max]; *floor* = the step's unavoidable raw NumPy GEMMs timed in "
        "the same run. *CPU ms*: the process's CPU time per step (all its threads; less sensitive to a loaded machine "
        "than wall time, though spinning BLAS threads count). RSS in MiB: the process's peak (imports included) "
        "and the step's growth over the built model.",
        "",
        "| shape | method | minilora ms | PyTorch ms | ratio [min-max] | floor ms (GFLOP/s) | minilora / floor "
        "| PyTorch / floor | CPU ms minilora / PyTorch | peak RSS minilora / PyTorch | step RSS minilora / PyTorch |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["rows"]:
        out.append(
            f"| {r['shape']} | {r['method']} | {r['minilora_ms']:.1f} | {r['torch_ms']:.1f} | **{r['ratio']:.2f}** "
            f"[{r['ratio_min']:.2f}-{r['ratio_max']:.2f}] | {r['floor_ms']:.1f} ({r['floor_gflops']:.0f}) | "
            f"{r['minilora_over_floor']:.2f} | {r['torch_over_floor']:.2f} | "
            f"{r['minilora_cpu_ms']:.0f} / {r['torch_cpu_ms']:.0f} | "
            f"{_mib(r['minilora_peak_rss'])} / {_mib(r['torch_peak_rss'])} | "
            f"{_mib(r['minilora_step_rss'])} / {_mib(r['torch_step_rss'])} |"
        )
    gap = max((r["first_loss_gap"] for r in results["rows"]), default=0.0)
    out += ["", f"First-step losses agree to {gap:.1e} (same weights and batch on both sides).", ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default="baby,medium", help="comma-separated subset of baby,medium")
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    ap.add_argument("--methods", default="full,lora", help="comma-separated subset of full,lora")
    ap.add_argument("--torch-python", default=os.environ.get("MINILORA_TORCH_PYTHON", sys.executable),
                    help="the interpreter that has torch (and peft); default $MINILORA_TORCH_PYTHON or this one")
    ap.add_argument("--threads", type=int, help="threads for every library in both processes (default: theirs)")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    ap.add_argument("--worker", choices=["minilora", "torch", "floor"], help=argparse.SUPPRESS)
    ap.add_argument("--shape", help=argparse.SUPPRESS)
    ap.add_argument("--method", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker_main(args)
        return None
    shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    if not shapes or any(s not in SHAPES for s in shapes):
        ap.error(f"--shapes: choose from {', '.join(SHAPES)}")
    if not methods or any(m not in ("full", "lora") for m in methods):
        ap.error("--methods: choose from full, lora")
    if probe(args.torch_python, "torch") is None:
        print(f"vs_torch: skipped: torch does not import under {args.torch_python} (give --torch-python)")
        return None
    results = run(shapes, args.rounds, args.torch_python, methods, args.threads)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
    print(markdown(results))
    return results


if __name__ == "__main__":
    main()
