"""``minilora demo --seeds N``: the demo fine-tuned N times from the same base, reported as mean and spread.

After 200 steps the accuracies move by several points with tiny changes (another seed, another
batch order), so one run's table is a sample, not a measurement. Here fine-tuning seed s, s+1,
..., s+N-1 each run every method from the same pre-trained base (pre-training keeps ``seed``);
each run's outputs go to ``out_dir/seed-<k>/``, and ``out_dir`` receives the summary:
``results.md`` / ``results.json`` with mean +- standard deviation (and min..max) of the final
validation loss and accuracy per method, and ``loss_curves.png`` of the mean curves.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import statistics
import time
from collections.abc import Sequence
from typing import Any

from minilora.demo.config import DemoConfig
from minilora.demo.report import MethodResult, ensure_dir, plot_curves
from minilora.demo.run import DemoResult, header_lines, run_demo


@dataclasses.dataclass
class SeedsResult:
    config: DemoConfig
    seeds: list[int]
    runs: list[DemoResult]
    seconds: float
    files: dict[str, str]


def spread(xs: Sequence[float]) -> dict[str, float]:
    """mean, standard deviation (0 for one value), min and max."""
    xs = [x for x in xs if not math.isnan(x)]
    if not xs:
        return {"mean": math.nan, "std": math.nan, "min": math.nan, "max": math.nan}
    return {"mean": statistics.fmean(xs), "std": statistics.stdev(xs) if len(xs) > 1 else 0.0,
            "min": min(xs), "max": max(xs)}


def summary_rows(runs: Sequence[DemoResult]) -> list[dict[str, Any]]:
    """Per method (in the runs' order): its fixed facts and the spread of its final loss and accuracy."""
    rows = []
    for i, first in enumerate(runs[0].results):
        per_seed = [run.results[i] for run in runs]
        rows.append({
            "method": first.method, "lr": first.lr, "trainable_params": first.trainable_params,
            "trainable_pct": first.trainable_pct, "adapter_bytes": first.adapter_bytes,
            "ms_per_step": statistics.median(r.ms_per_step for r in per_seed),
            "val_loss_after": spread([r.val_loss_after for r in per_seed]),
            "accuracy_after": spread([100 * r.accuracy_after for r in per_seed]),
            "accuracy_per_seed": [100 * r.accuracy_after for r in per_seed],
        })
    return rows


def _pm(s: dict[str, float], fmt: str, unit: str = "") -> str:
    if math.isnan(s["mean"]):
        return "-"
    return f"{s['mean']:{fmt}}{unit} ± {s['std']:{fmt}}"


def markdown_summary(rows: Sequence[dict[str, Any]], n: int) -> str:
    head = ["method", "lr", "trainable params", f"val loss after (mean ± sd, {n} seeds)",
            f"accuracy (mean ± sd, {n} seeds)", "accuracy min .. max", "per seed"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for r in rows:
        acc = r["accuracy_after"]
        rng = "-" if math.isnan(acc["mean"]) else f"{acc['min']:.1f} .. {acc['max']:.1f}%"
        per = " / ".join(f"{a:.1f}" for a in r["accuracy_per_seed"])
        lines.append(f"| {r['method']} | {r['lr']:g} | {r['trainable_params']:,} ({r['trainable_pct']:.2f}%) | "
                     f"{_pm(r['val_loss_after'], '.4f')} | {_pm(acc, '.1f', '%')} | {rng} | {per} |")
    return "\n".join(lines) + "\n"


def mean_curves(runs: Sequence[DemoResult]) -> list[MethodResult]:
    """Each method's curves averaged over the runs (the same steps in every run), for the picture."""
    out = []
    for i, first in enumerate(runs[0].results):
        per_seed = [run.results[i] for run in runs]

        def avg(field: str, per_seed: list[MethodResult] = per_seed) -> list[float]:
            return [statistics.fmean(v) for v in zip(*(getattr(r, field) for r in per_seed))]

        out.append(dataclasses.replace(first, train_loss=avg("train_loss"), val_loss=avg("val_loss"),
                                       val_accuracy=avg("val_accuracy")))
    return out


def finished_run(cfg: DemoConfig) -> DemoResult | None:
    """The run of ``cfg`` read back from its results.json when one with exactly this config is there (an
    interrupted ``--seeds`` run resumes; a seed may also be run on its own first), else None."""
    path = os.path.join(cfg.out_dir, "results.json")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        saved = json.load(f)
    if saved.get("config") != json.loads(json.dumps(cfg.to_dict())):
        return None
    acc = saved["base_accuracy"]
    return DemoResult(cfg, [MethodResult(**r) for r in saved["results"]], saved["base_val_loss"],
                      math.nan if acc is None else acc, saved["pretrain_val_loss"], saved["pretrain_seconds"],
                      saved["pretrain_cached"], saved["seconds"], {})


def run_seeds(cfg: DemoConfig, n_seeds: int, log: Any = print) -> SeedsResult:
    """The demo with fine-tuning seeds ``cfg.ft_seed + k`` for k < n_seeds, then the summary (module docstring)."""
    if not isinstance(n_seeds, int) or n_seeds < 1:
        raise ValueError(f"--seeds must be a positive integer, got {n_seeds!r}")
    t0 = time.perf_counter()
    out = ensure_dir(cfg.out_dir)
    seeds = [cfg.ft_seed + k for k in range(n_seeds)]
    runs = []
    for k, seed in enumerate(seeds):
        sub = dataclasses.replace(cfg, finetune_seed=seed, out_dir=os.path.join(out, f"seed-{seed}"))
        done = finished_run(sub)
        log(f"\n===== fine-tuning seed {seed} ({k + 1} of {n_seeds})"
            + (": finished earlier, read from its results.json =====" if done else " ====="))
        runs.append(done or run_demo(sub, log))
    seconds = time.perf_counter() - t0
    rows = summary_rows(runs)
    files = {"results.md": os.path.join(out, "results.md"), "results.json": os.path.join(out, "results.json"),
             "loss_curves.png": os.path.join(out, "loss_curves.png")}
    header = header_lines(runs[0])[0] + f" Fine-tuning seeds: {', '.join(map(str, seeds))} (same base)."
    table = markdown_summary(rows, n_seeds)
    with open(files["results.md"], "w", encoding="utf-8") as f:
        f.write(header + "\n\n" + table)
    with open(files["results.json"], "w", encoding="utf-8") as f:
        json.dump({"config": cfg.to_dict(), "seeds": seeds, "seconds": seconds, "methods": rows,
                   "runs": [os.path.join(out, f"seed-{s}", "results.json") for s in seeds]}, f, indent=1)
    title = f"minilora demo: mean of {n_seeds} fine-tuning seeds on '{cfg.domain}' ({cfg.steps} steps per method)"
    if not plot_curves(files["loss_curves.png"], mean_curves(runs), title):
        files.pop("loss_curves.png")
    log(f"\n{header}\n\n{table}\nwrote {', '.join(files.values())} in {seconds:.0f} s")
    return SeedsResult(cfg, seeds, runs, seconds, files)
