"""The demo's outputs: one table (console, Markdown, CSV) and a picture of the loss curves (PNG)."""

from __future__ import annotations

import csv
import dataclasses
import math
import os
from collections.abc import Sequence
from typing import Any

PLOT_HINT = "pip install 'minilora[plot]'"


@dataclasses.dataclass
class MethodResult:
    """One row of the demo's table, plus the curves behind it."""

    method: str
    trainable_params: int
    total_params: int
    adapter_bytes: int  # save_adapter's files on disk ("full": the whole model)
    weight_bytes: int  # every weight and buffer as stored
    peak_bytes: int  # weights + optimizer state + tracemalloc peak of one step
    ms_per_step: float
    val_loss_before: float
    val_loss_after: float
    accuracy_before: float
    accuracy_after: float
    lr: float
    train_steps: list[int] = dataclasses.field(default_factory=list)
    train_loss: list[float] = dataclasses.field(default_factory=list)
    val_steps: list[int] = dataclasses.field(default_factory=list)
    val_loss: list[float] = dataclasses.field(default_factory=list)
    val_accuracy: list[float] = dataclasses.field(default_factory=list)

    @property
    def trainable_pct(self) -> float:
        return 100.0 * self.trainable_params / max(self.total_params, 1)


COLUMNS = ("method", "trainable params", "trainable %", "adapter on disk", "weight memory", "peak memory",
           "ms/step", "val loss before", "val loss after", "accuracy")


def human_bytes(n: float) -> str:
    """1536 -> "1.5 KiB"."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    raise AssertionError  # pragma: no cover


def _num(x: float, fmt: str) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def _acc(before: float, after: float) -> str:
    if math.isnan(after):
        return "-"
    return f"{_num(100 * before, '.1f')}% -> {100 * after:.1f}%"


def row_cells(r: MethodResult) -> list[str]:
    return [
        r.method, f"{r.trainable_params:,}", f"{r.trainable_pct:.2f}%", human_bytes(r.adapter_bytes),
        human_bytes(r.weight_bytes), human_bytes(r.peak_bytes), _num(r.ms_per_step, ".1f"),
        _num(r.val_loss_before, ".4f"), _num(r.val_loss_after, ".4f"), _acc(r.accuracy_before, r.accuracy_after),
    ]


def markdown_table(results: Sequence[MethodResult]) -> str:
    right = {i for i in range(1, len(COLUMNS))}
    lines = ["| " + " | ".join(COLUMNS) + " |",
             "|" + "|".join("---:" if i in right else "---" for i in range(len(COLUMNS))) + "|"]
    lines += ["| " + " | ".join(row_cells(r)) + " |" for r in results]
    return "\n".join(lines) + "\n"


def console_table(results: Sequence[MethodResult]) -> str:
    cells = [list(COLUMNS)] + [row_cells(r) for r in results]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]

    def fmt(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

    return "\n".join([fmt(cells[0]), "  ".join("-" * w for w in widths)] + [fmt(r) for r in cells[1:]])


CSV_FIELDS = ("method", "trainable_params", "total_params", "trainable_pct", "adapter_bytes", "weight_bytes",
              "peak_bytes", "ms_per_step", "val_loss_before", "val_loss_after", "accuracy_before", "accuracy_after",
              "lr")


def write_csv(path: str, results: Sequence[MethodResult]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(CSV_FIELDS)
        for r in results:
            w.writerow([getattr(r, k) for k in CSV_FIELDS])


# eight colours far apart (Okabe-Ito, safe for colour-blind readers, plus black), each with its own dash and
# marker, so neighbours in the table (lora and adapter were orange and red) never look alike
PALETTE = ("#000000", "#0072B2", "#56B4E9", "#E69F00", "#CC79A7", "#D55E00", "#009E73", "#7F3C8D")
LINESTYLES = ("-", "-", "--", "-", "-.", "--", "-", ":")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def plot_curves(path: str, results: Sequence[MethodResult], title: str) -> bool:
    """Training (smoothed) and validation loss per method into a PNG; False when matplotlib is missing."""
    try:
        import matplotlib  # noqa: PLC0415  (optional extra "plot")

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        return False
    with_acc = any(r.val_accuracy and not all(math.isnan(a) for a in r.val_accuracy) for r in results)
    fig, axes = plt.subplots(1, 3 if with_acc else 2, figsize=(16 if with_acc else 12, 4.5))
    ax_t, ax_v = axes[0], axes[1]
    for i, r in enumerate(results):
        style = {"color": PALETTE[i % len(PALETTE)], "ls": LINESTYLES[i % len(LINESTYLES)], "lw": 1.5,
                 "label": r.method}
        ax_t.plot(r.train_steps, _smooth(r.train_loss), **style)
        ax_v.plot(r.val_steps, r.val_loss, marker=MARKERS[i % len(MARKERS)], ms=3.5, **style)
        if with_acc:
            axes[2].plot(r.val_steps, [100 * a for a in r.val_accuracy], marker=MARKERS[i % len(MARKERS)], ms=3.5,
                         **style)
    ax_t.set(title="training loss (moving average of 10 steps)", xlabel="step", ylabel="cross entropy", yscale="log")
    ax_v.set(title="validation loss", xlabel="step", ylabel="cross entropy", yscale="log")
    if with_acc:
        axes[2].set(title="held-out exact-match accuracy", xlabel="step", ylabel="%", ylim=(-2, 102))
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[-1].legend(ncol=2, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _smooth(xs: Sequence[float], k: int = 10) -> list[float]:
    out, acc = [], 0.0
    for i, x in enumerate(xs):
        acc += x
        if i >= k:
            acc -= xs[i - k]
        out.append(acc / min(i + 1, k))
    return out


def result_dicts(results: Sequence[MethodResult]) -> list[dict[str, Any]]:
    return [dataclasses.asdict(r) for r in results]


def ensure_dir(path: str) -> str:
    os.makedirs(path, exist_ok=True)
    return path
