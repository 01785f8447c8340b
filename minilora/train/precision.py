"""Mixed-precision training (``TrainConfig.precision``): 16-bit GEMMs, float32 master weights and state.

    fp32  everything in float32 (the CPU default: NumPy has no fast 16-bit GEMM)
    bf16  the forward runs under nn.precision.autocast("bfloat16"); no loss scaling (float32's range)
    fp16  the same in float16, with dynamic loss scaling (optim.GradScaler): a step whose gradients
          overflow is skipped and logged, and the scale halves

The parameters, their gradients and the optimizer's state stay float32 in every mode: autocast casts
the master weights down per GEMM, and the casts' backward brings the gradients back to float32,
where the scaler divides them by S.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from minilora.nn.precision import autocast
from minilora.optim.grad_scaler import GradScaler

PRECISIONS: dict[str, str | None] = {"fp32": None, "bf16": "bfloat16", "fp16": "float16"}


class MixedPrecision:
    """The trainer's precision policy: the forward's autocast, the loss scaling and the skip decision."""

    def __init__(self, precision: str) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
        self.precision, self.dtype = precision, PRECISIONS[precision]
        self.scaler = GradScaler(enabled=precision == "fp16")
        self.skipped = 0  # steps skipped for an overflow, this run

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        with autocast(self.dtype or "float16", enabled=self.dtype is not None), self._quiet():
            yield

    def backward(self, loss: Any) -> None:
        with self._quiet():
            self.scaler.scale(loss).backward()

    def _quiet(self) -> Any:
        """fp16 overflows are expected (the scaler skips those steps): no NumPy overflow warnings for them."""
        return np.errstate(over="ignore", invalid="ignore") if self.scaler.enabled else contextlib.nullcontext()

    def overflowed(self, params: list[Any], norm_value: float) -> bool:
        """fp16: True when the (scaled) gradients hold an inf/NaN: they are dropped and the scale backs off
        (LossScaleError if it falls below 1). The caller skips the update."""
        if not self.scaler.enabled or not self.scaler.found_inf(norm_value):
            return False
        for p in params:
            p.grad = None
        self.scaler.update(True)
        self.skipped += 1
        return True

    def unscale(self, params: list[Any], norm: Any, norm_value: float) -> tuple[Any, float]:
        """Gradients, their norm (Tensor) and its host value divided by S; the clean step is counted."""
        if not self.scaler.enabled:
            return norm, norm_value
        s = self.scaler.get_scale()
        self.scaler.unscale_(params)
        self.scaler.update(False)
        return norm * (1.0 / s), norm_value / s
