"""Learning-rate schedules: step -> multiplier of each parameter group's base learning rate.

The trainer sets, before optimizer step ``step`` (0-based)::

    group["lr"] = group["initial_lr"] * schedule(step)

so groups with different base rates (e.g. a larger rate for a classifier head) keep
their ratio. Every schedule is a small class with ``to_dict``/``schedule_from_dict``
so checkpoints record it as JSON.
"""

from __future__ import annotations

import math
from typing import Any


class Schedule:
    """Base: ``schedule(step) -> float`` multiplier in [0, 1]."""

    name = "base"

    def __call__(self, step: int) -> float:  # pragma: no cover - interface
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **vars(self)}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class ConstantSchedule(Schedule):
    """Constant rate, after an optional linear warmup: factor = min(1, (step + 1) / warmup_steps)."""

    name = "constant"

    def __init__(self, warmup_steps: int = 0) -> None:
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step: int) -> float:
        return _warmup(step, self.warmup_steps) or 1.0


class _DecaySchedule(Schedule):
    """Linear warmup, then ``_decay(q)`` where q = (step - warmup) / (max - warmup), clipped to 1."""

    def __init__(self, max_steps: int, warmup_steps: int, min_ratio: float) -> None:
        _validate(max_steps, warmup_steps, min_ratio)
        self.max_steps, self.warmup_steps, self.min_ratio = int(max_steps), int(warmup_steps), min_ratio

    def __call__(self, step: int) -> float:
        w = _warmup(step, self.warmup_steps)
        if w is not None:
            return w
        return self._decay(min(1.0, (step - self.warmup_steps) / max(1, self.max_steps - self.warmup_steps)))

    def _decay(self, q: float) -> float:  # pragma: no cover - interface
        raise NotImplementedError


class WarmupCosineSchedule(_DecaySchedule):
    """Linear warmup, then cosine decay to ``min_ratio``.

    factor = (step + 1) / warmup_steps                                  for step < warmup_steps
    factor = min_ratio + (1 - min_ratio) * (1 + cos(pi * q)) / 2         after, q = (step - warmup) / (max - warmup)
    factor = min_ratio                                                   for step >= max_steps
    """

    name = "cosine"

    def __init__(self, max_steps: int, warmup_steps: int = 0, min_ratio: float = 0.1) -> None:
        super().__init__(max_steps, warmup_steps, min_ratio)

    def _decay(self, q: float) -> float:
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * q))


class LinearSchedule(_DecaySchedule):
    """Linear warmup, then linear decay from 1 to ``min_ratio`` at max_steps (and flat after)."""

    name = "linear"

    def __init__(self, max_steps: int, warmup_steps: int = 0, min_ratio: float = 0.0) -> None:
        super().__init__(max_steps, warmup_steps, min_ratio)

    def _decay(self, q: float) -> float:
        return 1.0 - (1.0 - self.min_ratio) * q


def _warmup(step: int, warmup_steps: int) -> float | None:
    if step < 0:
        raise ValueError(f"schedule: step must be >= 0, got {step}")
    return (step + 1) / warmup_steps if step < warmup_steps else None


def _validate(max_steps: int, warmup_steps: int, min_ratio: float) -> None:
    if max_steps <= 0 or warmup_steps < 0 or warmup_steps > max_steps:
        raise ValueError(f"schedule: need 0 <= warmup_steps ({warmup_steps}) <= max_steps ({max_steps}), max_steps > 0")
    if not 0.0 <= min_ratio <= 1.0:
        raise ValueError(f"schedule: min_ratio must be in [0, 1], got {min_ratio}")


SCHEDULES = {"constant": ConstantSchedule, "cosine": WarmupCosineSchedule, "linear": LinearSchedule}


def get_schedule(name: str, max_steps: int, warmup_steps: int = 0, min_ratio: float | None = None) -> Schedule:
    """A schedule by name: "constant", "cosine" (warmup + cosine) or "linear" (warmup + linear decay)."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; expected one of {sorted(SCHEDULES)}")
    if name == "constant":
        return ConstantSchedule(warmup_steps)
    kw = {} if min_ratio is None else {"min_ratio": min_ratio}
    return SCHEDULES[name](max_steps, warmup_steps, **kw)


def schedule_from_dict(d: dict[str, Any]) -> Schedule:
    d = dict(d)
    name = d.pop("name", None)
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r} in saved state; expected one of {sorted(SCHEDULES)}")
    return SCHEDULES[name](**d)
