"""LoRA's parameter arithmetic: a d x k weight trained in full costs d*k numbers, its rank-r update r*(d+k).

    full:  Delta W               (d, k)              d * k
    LoRA:  Delta W = B A,  B (d, r),  A (r, k)        r * (d + k)
    compression = d*k / (r*(d + k))                   e.g. d = k = 4096, r = 8: 16,777,216 / 65,536 = 256x

``layer_table`` does the same for every targeted Linear of a model (d = out_features, k = in_features).
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class LayerCount:
    """The arithmetic for one d x k weight at rank r."""

    name: str
    d: int  # out_features
    k: int  # in_features
    r: int
    count: int = 1  # how many layers of this shape (e.g. one per block)

    @property
    def full(self) -> int:
        return self.d * self.k

    @property
    def lora(self) -> int:
        return self.r * (self.d + self.k)

    @property
    def compression(self) -> float:
        return self.full / self.lora


def lora_counts(d: int, k: int, r: int, name: str = "W") -> LayerCount:
    """Full and LoRA parameter counts of one d x k weight at rank r (positive integers, r <= min(d, k))."""
    for label, v in (("d", d), ("k", k), ("r", r)):
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise ValueError(f"lora_counts: {label} must be a positive integer, got {v!r}")
    if r > min(d, k):
        raise ValueError(f"lora_counts: rank r={r} exceeds min(d, k)={min(d, k)}: the update would not be low-rank")
    return LayerCount(name, d, k, r)


def format_ratio(x: float) -> str:
    """256.0 -> "256x", 12.34 -> "12.3x"."""
    return f"{x:,.0f}x" if abs(x - round(x)) < 1e-9 or x >= 100 else f"{x:,.1f}x"


def describe(c: LayerCount) -> str:
    """The arithmetic of one layer in words and numbers, thousands separated."""
    width = len(f"{c.full:,}")
    return "\n".join([
        f"weight {c.d:,} x {c.k:,} (d x k), LoRA rank r = {c.r}",
        f"  full fine-tuning  d*k       = {c.full:>{width},} trainable parameters",
        f"  LoRA              r*(d+k)   = {c.lora:>{width},} trainable parameters (B: {c.d:,} x {c.r}, "
        f"A: {c.r} x {c.k:,})",
        f"  compression       {format_ratio(c.compression)} (LoRA trains {100 / c.compression:.2f}% of the layer)",
    ])


def layer_table(model: Any, targets: Any, r: int) -> list[LayerCount]:
    """One LayerCount per distinct targeted layer kind of ``model`` (e.g. "attn.c_attn" x n_layer)."""
    from minilora.peft import match_targets  # noqa: PLC0415

    rows: dict[tuple[str, int, int], int] = {}
    for path in match_targets(model, targets, method="params"):
        layer = model.get_submodule(path)
        parts = path.split(".")
        block = max((i for i, p in enumerate(parts) if p.isdigit()), default=-1)  # the path inside a block
        kind = ".".join(parts[block + 1 :])
        key = (kind, layer.out_features, layer.in_features)
        rows[key] = rows.get(key, 0) + 1
    return [LayerCount(kind, d, k, min(r, d, k), n) for (kind, d, k), n in rows.items()]


def table_lines(rows: list[LayerCount], total_params: int | None = None) -> list[str]:
    """A plain-text table of ``rows`` with a total line (and the share of the whole model when given)."""
    head = f"{'layer':<16} {'d x k':>11} {'count':>5} {'full d*k':>12} {'LoRA r(d+k)':>12} {'compression':>11}"
    lines = [head, "-" * len(head)]
    full = lora = 0
    for c in rows:
        full, lora = full + c.full * c.count, lora + c.lora * c.count
        lines.append(f"{c.name:<16} {f'{c.d}x{c.k}':>11} {c.count:>5} {c.full * c.count:>12,} "
                     f"{c.lora * c.count:>12,} {format_ratio(c.compression):>11}")
    lines.append(f"{'total':<16} {'':>11} {sum(c.count for c in rows):>5} {full:>12,} {lora:>12,} "
                 f"{format_ratio(full / max(lora, 1)):>11}")
    if total_params:
        lines.append(f"LoRA trains {lora:,} of the model's {total_params:,} parameters "
                     f"({100 * lora / total_params:.2f}%); full fine-tuning trains all of them.")
    return lines
