"""Dynamic loss scaling for float16 training, with the semantics of PyTorch's ``torch.amp.GradScaler``.

float16 has 5 exponent bits: gradients below 6e-8 flush to zero. So the loss is multiplied by a
scale S before backward, which lifts the small gradients into range, and the float32 gradients
are divided by S again before the optimizer sees them. S is dynamic:

    start at init_scale (2^16);
    a step whose gradients hold an inf or NaN is SKIPPED (no update) and S *= backoff_factor (0.5);
    after growth_interval (2000) clean steps in a row, S *= growth_factor (2).

S is a power of two, so scaling and unscaling are exact. bfloat16 has float32's exponent range and
needs no scaling (``enabled=False`` makes every method a no-op with S = 1). If S falls below 1 the
gradients overflow even unscaled: training stops with a one-line error instead of skipping forever.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from minilora.optim.clip import NonFiniteError
from minilora.tensor import Tensor


class LossScaleError(NonFiniteError):
    """The loss scale collapsed below 1: float16 cannot represent this run's gradients."""


class GradScaler:
    """scale(loss) before backward; after backward, update(found_inf) decides; unscale_ divides the grads."""

    def __init__(self, init_scale: float = 2.0**16, growth_factor: float = 2.0, backoff_factor: float = 0.5,
                 growth_interval: int = 2000, enabled: bool = True) -> None:
        if not (init_scale > 0 and growth_factor > 1 and 0 < backoff_factor < 1 and growth_interval >= 1):
            raise ValueError(
                f"GradScaler: need init_scale > 0, growth_factor > 1, 0 < backoff_factor < 1, growth_interval "
                f">= 1; got {init_scale}, {growth_factor}, {backoff_factor}, {growth_interval}"
            )
        self.enabled = enabled
        self.growth_factor, self.backoff_factor, self.growth_interval = growth_factor, backoff_factor, growth_interval
        self._scale = float(init_scale) if enabled else 1.0  # host: a Python number, never an array
        self._growth_tracker = 0  # clean steps since the last change of scale

    def get_scale(self) -> float:
        return self._scale

    def scale(self, loss: Tensor) -> Tensor:
        """The loss times S (the loss itself when disabled)."""
        return loss * self._scale if self.enabled else loss

    def unscale_(self, params: Iterable[Any]) -> None:
        """Divide every gradient by S, in its own (float32 master) dtype: exact, S being a power of two."""
        if not self.enabled:
            return
        inv = 1.0 / self._scale
        for p in params:
            if p.grad is not None:
                p.grad = p.grad * p.xp.asarray(inv, dtype=p.grad.dtype)

    def update(self, found_inf: bool) -> None:
        """After a step: back off (and count nothing) on an overflow, else grow after growth_interval clean steps."""
        if not self.enabled:
            return
        if found_inf:
            self._scale *= self.backoff_factor
            self._growth_tracker = 0
            if self._scale < 1.0:
                raise LossScaleError(
                    f"fp16 loss scale fell to {self._scale:g} (< 1): the gradients overflow float16 even unscaled; "
                    "train with --precision bf16 or fp32, or lower the learning rate"
                )
            return
        self._growth_tracker += 1
        if self._growth_tracker == self.growth_interval:
            self._scale *= self.growth_factor
            self._growth_tracker = 0

    @staticmethod
    def found_inf(grad_norm: float) -> bool:
        """True if any gradient holds an inf or NaN: exactly when their global norm (a host float) is not finite."""
        return not math.isfinite(grad_norm)

    def state_dict(self) -> dict[str, Any]:
        return {"scale": self._scale, "growth_factor": self.growth_factor, "backoff_factor": self.backoff_factor,
                "growth_interval": self.growth_interval, "_growth_tracker": self._growth_tracker}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state_dict (validated first: a bad one changes nothing)."""
        keys = {"scale", "growth_factor", "backoff_factor", "growth_interval", "_growth_tracker"}
        if not isinstance(state, dict) or set(state) != keys:
            raise ValueError(f"GradScaler.load_state_dict: expected the keys {sorted(keys)}, got "
                             f"{sorted(state) if isinstance(state, dict) else type(state).__name__}")
        if not (isinstance(state["scale"], (int, float)) and math.isfinite(state["scale"]) and state["scale"] > 0):
            raise ValueError(f"GradScaler.load_state_dict: scale must be positive and finite, got {state['scale']!r}")
        self._scale = float(state["scale"])  # host: checked above to be a Python int or float
        self.growth_factor, self.backoff_factor = float(state["growth_factor"]), float(state["backoff_factor"])  # host
        self.growth_interval, self._growth_tracker = int(state["growth_interval"]), int(state["_growth_tracker"])
